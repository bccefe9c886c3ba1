"""The OpenAPI 3.1 document of the REST API, served at ``GET /openapi.json``.

Request bodies are the JSON Schemas the handlers validate with, by reference
(:data:`subscriptions.SCHEMA`, :data:`subscriptions.ROTATE_SCHEMA`, :data:`replay.SCHEMA`, the
delivery states and modes of :mod:`models`), never copies, so the document
cannot drift from what the service enforces.  The response schemas are
written here, once each, as the handlers build them
(:meth:`models.EventMatch.to_hash`, :func:`rest.error_body`,
:func:`rest.accept_event`, :func:`history.deliveries`, ...).  Nothing here
touches the database.
"""

from __future__ import annotations

from typing import Any

from . import __version__, history, replay, rest, subscriptions
from .config import settings
from .models import DELIVERY_STATES

OPENAPI_VERSION = '3.1.0'

#: Where the document is served.
PATH = '/openapi.json'


def _ref(kind: str, name: str) -> dict:
    return {'$ref': f'#/components/{kind}/{name}'}


def _schema(name: str) -> dict:
    return _ref('schemas', name)


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema's ``properties`` (the schemas themselves, not copies)."""
    return schema['properties']


#: What a client may send of each field (:data:`subscriptions.SCHEMA`).
FIELDS = _properties(subscriptions.SCHEMA)


def _nullable(schema: dict) -> dict:
    return {'anyOf': [schema, {'type': 'null'}]}


#: A time as the service writes it: ISO 8601 in UTC, without an offset (``2018-08-02T13:53:05.838827``).
TIME = {
    'type': 'string',
    'pattern': r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?$',
    'description': 'ISO 8601, UTC, without an offset.',
}
UUID = {'type': 'string', 'format': 'uuid'}
#: What became of a delivery (:data:`models.DELIVERY_STATES`; JSON Schema wants a list).
STATE = {'enum': list(DELIVERY_STATES)}

#: The error body of every answer that is not 200 (:func:`rest.error_body`).
ERROR = {
    'type': 'object',
    'properties': {
        'status': {'type': 'string', 'description': 'The status line, as `403 Forbidden`.'},
        'message': {'type': 'string', 'description': 'Why.'},
        'version': {'type': 'string', 'description': 'The service version.'},
    },
    'required': ['status', 'message', 'version'],
    'additionalProperties': False,
}

#: A subscription as every ``/eventmatch`` call returns it (:meth:`models.EventMatch.to_hash`).
SUBSCRIPTION = {
    'type': 'object',
    'properties': {
        'uuid': UUID,
        'user': {'type': 'string'},
        'name': {'type': 'string'},
        'jsonpath': {'type': 'string'},
        'target_url': {'type': 'string'},
        'auth': {'type': 'object', 'description': 'As set, with the password or credentials shown as `********`.'},
        'extensions': {'type': 'object'},
        'delivery_mode': FIELDS['delivery_mode'],
        'version': {'type': 'string'},
        'created': TIME,
        'updated': TIME,
        'disabled': _nullable(TIME),
        'deleted': _nullable(TIME),
        'error': {'type': ['string', 'null']},
    },
    'required': [
        'uuid',
        'user',
        'name',
        'jsonpath',
        'target_url',
        'auth',
        'extensions',
        'delivery_mode',
        'version',
        'created',
        'updated',
        'disabled',
        'deleted',
        'error',
    ],
    'additionalProperties': False,
}

#: ``{"key": "whsec_..."}`` (:func:`subscriptions.secret`, :func:`subscriptions.rotate`).
SECRET = {
    'type': 'object',
    'properties': {'key': {'type': 'string', 'description': '`whsec_` and the base64 of the secret.'}},
    'required': ['key'],
    'additionalProperties': False,
}

#: The answer to one event (:func:`rest.accept_event`).
ACCEPTED = {
    'type': 'object',
    'properties': {
        'status': {'const': 'accepted'},
        'uuid': UUID,
        'duplicate': {'type': 'boolean', 'description': 'Whether the event was already stored (this names it).'},
    },
    'required': ['status', 'uuid', 'duplicate'],
    'additionalProperties': False,
}

#: The answer to a batch (:func:`rest.accept_batch`).
BATCH_ACCEPTED = {
    'type': 'object',
    'properties': {
        'status': {'const': 'accepted'},
        'events': {
            'type': 'array',
            'items': {
                'type': 'object',
                'properties': {'uuid': UUID, 'duplicate': {'type': 'boolean'}},
                'required': ['uuid', 'duplicate'],
                'additionalProperties': False,
            },
        },
    },
    'required': ['status', 'events'],
    'additionalProperties': False,
}

#: One delivery as its subscriber sees it (:func:`history.entry`); open, so an event view can add its subscription.
DELIVERY_FIELDS = {
    'type': 'object',
    'properties': {
        'event_uuid': UUID,
        'event_id': {
            'type': ['string', 'integer', 'number', 'boolean', 'null'],
            'description': "The event's `id` (`eventID` in CloudEvents 0.1); JSON text if it is not a scalar.",
        },
        'received': TIME,
        'state': STATE,
        'attempts': {'type': 'integer', 'minimum': 0},
        'last_attempt': _nullable(TIME),
        'next_attempt': _nullable(TIME),
        'policy_status_code': {'type': ['string', 'null']},
        'target_status_code': {'type': ['string', 'null']},
        'target_resp_body': {'type': ['string', 'null']},
    },
    'required': [
        'event_uuid',
        'event_id',
        'received',
        'state',
        'attempts',
        'last_attempt',
        'next_attempt',
        'policy_status_code',
        'target_status_code',
        'target_resp_body',
    ],
}

#: A page of a subscription's deliveries (:func:`history.deliveries`).
DELIVERIES = {
    'type': 'object',
    'properties': {
        'items': {'type': 'array', 'items': {'allOf': [_schema('DeliveryFields')], 'unevaluatedProperties': False}},
        'next': {'type': ['string', 'null'], 'description': 'The `before` of the next page; null on the last page.'},
    },
    'required': ['items', 'next'],
    'additionalProperties': False,
}

#: One event as received, with its deliveries to the caller's subscriptions (:func:`history.event_for`).
EVENT_VIEW = {
    'type': 'object',
    'properties': {
        'uuid': UUID,
        'received': TIME,
        'event': {'description': 'The event as stored (any JSON value; an object for every event taken in).'},
        'deliveries': {
            'type': 'array',
            'items': {
                'allOf': [_schema('DeliveryFields')],
                'properties': {'subscription': UUID},
                'required': ['subscription'],
                'unevaluatedProperties': False,
            },
        },
    },
    'required': ['uuid', 'received', 'event', 'deliveries'],
    'additionalProperties': False,
}

#: What ``POST /eventmatch/<uuid>/replay`` takes (:data:`replay.SCHEMA`).
REPLAY = replay.SCHEMA

#: What a replay answers: how many deliveries it queued.
REPLAY_QUEUED = {
    'type': 'object',
    'properties': {'queued': {'type': 'integer', 'minimum': 0}},
    'required': ['queued'],
    'additionalProperties': False,
}

_UP_OR_DOWN = {'enum': ['ok', 'unavailable']}

#: The health check's body (:func:`status.report`), for 200 and 503 alike.
STATUS = {
    'type': 'object',
    'properties': {
        'status': _UP_OR_DOWN,
        'version': {'type': 'string'},
        'schema': {'type': ['string', 'null'], 'description': 'The database schema version; null if unreachable.'},
        'database': _UP_OR_DOWN,
        'broker': _UP_OR_DOWN,
        'backlog': {
            'anyOf': [
                {
                    'type': 'object',
                    'properties': {
                        'dispatch': {'type': 'integer', 'minimum': 0},
                        'policy': {'type': 'integer', 'minimum': 0},
                        'deliveries': {'type': 'integer', 'minimum': 0},
                    },
                    'required': ['dispatch', 'policy', 'deliveries'],
                    'additionalProperties': False,
                },
                {'type': 'null'},
            ]
        },
        'oldest_pending_seconds': {'type': ['number', 'null'], 'minimum': 0},
    },
    'required': ['status', 'version', 'schema', 'database', 'broker', 'backlog', 'oldest_pending_seconds'],
    'additionalProperties': False,
}


#: A CloudEvent sent as ``application/cloudevents+json`` (or in a batch): 1.0, or 0.1 as before.
STRUCTURED_EVENT = {
    'type': 'object',
    'anyOf': [{'required': ['specversion']}, {'required': ['cloudEventsVersion']}],
    'description': 'A 1.0 event (with `specversion`), checked against the specification; or a 0.1 event.',
}


def _change_schema() -> dict:
    """What ``PUT /eventmatch/<uuid>`` takes: :data:`subscriptions.SCHEMA`'s fields (each the same object).

    Without ``signing_secret`` (400: it changes by rotation), and with the
    read-only fields, which may only be echoed back as ``GET`` returned them.
    """
    fields = {key: value for key, value in FIELDS.items() if key != 'signing_secret'}
    for key in subscriptions.READ_ONLY:
        fields[key] = {
            **_properties(SUBSCRIPTION)[key],
            'readOnly': True,
            'description': 'Read-only: may be sent only unchanged (as GET returned it); any other value is 400.',
        }
    return {'type': 'object', 'properties': fields, 'additionalProperties': False}


def _error(description: str) -> dict:
    return {'description': description, 'content': {'application/json': {'schema': _schema('Error')}}}


def _json(description: str, schema: dict) -> dict:
    return {'description': description, 'content': {'application/json': {'schema': schema}}}


#: The error answers every operation shares, by status.
ERRORS = {
    '400': 'BadRequest',
    '403': 'NotVisible',
    '404': 'NotFound',
    '409': 'Conflict',
    '411': 'LengthRequired',
    '413': 'TooLarge',
    '415': 'UnsupportedMediaType',
    '503': 'Unavailable',
}


def _responses(ok: dict, *errors: str) -> dict:
    return {'200': ok, **{status: _ref('responses', ERRORS[status]) for status in errors}}


def _operation(operation_id: str, summary: str, responses: dict, *parameters: str, body: dict | None = None) -> dict:
    operation: dict[str, Any] = {
        'operationId': operation_id,
        'summary': summary,
        'parameters': [_ref('parameters', 'RemoteUser'), *(_ref('parameters', name) for name in parameters)],
    }
    if body is not None:
        operation['requestBody'] = body
    operation['responses'] = responses
    return operation


def _body(schema: dict, required: bool = True) -> dict:
    return {'required': required, 'content': {'application/json': {'schema': schema}}}


RECEIVE_DESCRIPTION = (
    'Store a CloudEvent (any JSON object; a CloudEvents 1.0 event is checked against the specification) '
    'and answer once it is committed. Every form of the CloudEvents 1.0 HTTP protocol binding is taken: '
    'structured (`application/json` or `application/cloudevents+json`), batched '
    '(`application/cloudevents-batch+json`, a JSON array of events, stored all or none) and binary: '
    'with a `ce-specversion` header the attributes are the `ce-` headers (`ce-id`, `ce-source`, '
    '`ce-type`, ...), percent-encoded UTF-8, and the body is the data, of any media type, named by '
    '`Content-Type` (which OpenAPI cannot express: binary mode is not among the request bodies below). '
    'An event sent again (the same `source` and id) is not stored twice: the answer names the first copy.'
)


def document() -> dict:
    """The OpenAPI 3.1 document of every route this service serves."""
    config = settings()
    status_path, metrics_path = config.status_path, config.metrics_path
    body_errors = ('400', '411', '413', '415', '503')
    one = ('Uuid',)
    paths: dict[str, dict] = {
        '/receive': {
            'post': {
                **_operation(
                    'receiveEvent',
                    'Take in a CloudEvent, or a batch of them',
                    _responses(
                        _json(
                            'Stored (or already stored).', {'oneOf': [_schema('Accepted'), _schema('BatchAccepted')]}
                        ),
                        *body_errors,
                    ),
                    body={
                        'required': True,
                        'content': {
                            'application/json': {'schema': {'type': 'object'}},
                            rest.STRUCTURED: {'schema': STRUCTURED_EVENT},
                            rest.BATCH: {'schema': {'type': 'array', 'items': STRUCTURED_EVENT}},
                        },
                    },
                ),
                'description': RECEIVE_DESCRIPTION,
            }
        },
        '/eventmatch': {
            'get': _operation(
                'listSubscriptions',
                "The caller's subscriptions that are not deleted, oldest first",
                _responses(
                    _json('The subscriptions.', {'type': 'array', 'items': _schema('Subscription')}), '400', '503'
                ),
            ),
            'post': _operation(
                'createSubscription',
                'Create a subscription owned by the caller',
                _responses(_json('The new subscription.', _schema('Subscription')), *body_errors),
                body=_body(_schema('SubscriptionCreate')),
            ),
        },
        '/eventmatch/{uuid}': {
            'get': _operation(
                'getSubscription',
                'One subscription of the caller',
                _responses(_json('The subscription.', _schema('Subscription')), '400', '403', '404', '503'),
                *one,
            ),
            'put': _operation(
                'updateSubscription',
                'Change the fields given',
                _responses(_json('The new state.', _schema('Subscription')), '400', '403', '404', *body_errors[1:]),
                *one,
                body=_body(_schema('SubscriptionChange')),
            ),
            'delete': _operation(
                'deleteSubscription',
                'Delete a subscription (kept for the log, marked deleted)',
                _responses(_json('The final state.', _schema('Subscription')), '400', '403', '404', '503'),
                *one,
            ),
        },
        '/eventmatch/{uuid}/secret': {
            'get': _operation(
                'getSigningSecret',
                "The subscription's signing secret",
                _responses(_json('The secret.', _schema('Secret')), '400', '403', '404', '503'),
                *one,
            ),
        },
        '/eventmatch/{uuid}/secret/rotate': {
            'post': _operation(
                'rotateSigningSecret',
                'A new signing secret: the one given, or a random one (no body, or `{}`)',
                _responses(_json('The new secret.', _schema('Secret')), '400', '403', '404', *body_errors[1:]),
                *one,
                body=_body(_schema('SecretRotation'), required=False),
            ),
        },
        '/eventmatch/{uuid}/deliveries': {
            'get': _operation(
                'listDeliveries',
                "The subscription's deliveries, newest first, a page at a time",
                _responses(_json('A page.', _schema('Deliveries')), '400', '403', '404', '503'),
                'Uuid',
                'Limit',
                'Before',
                'State',
            ),
        },
        '/eventmatch/{uuid}/replay': {
            'post': {
                **_operation(
                    'replayDeliveries',
                    'Deliver the events of a span of time that the subscription matches and has not received',
                    _responses(
                        _json('How many deliveries were queued.', _schema('ReplayQueued')),
                        '400',
                        '403',
                        '404',
                        '409',
                        *body_errors[1:],
                    ),
                    *one,
                    body=_body(_schema('Replay')),
                ),
                'description': (
                    'Every event received from `since` to `until` (now when left out) is matched again; each match '
                    'not yet delivered is queued. A span longer than `replay_window` is 400; a disabled '
                    'subscription, or one whose earlier replay (or other work) is still under way, is 409.'
                ),
            },
        },
        '/events/{uuid}': {
            'get': _operation(
                'getEvent',
                "One event as received, with its deliveries to the caller's subscriptions",
                _responses(_json('The event.', _schema('EventView')), '400', '403', '404', '503'),
                *one,
            ),
        },
        PATH: {
            'get': _operation(
                'getOpenApi',
                'This document',
                _responses(_json('The OpenAPI document.', {'type': 'object'})),
            ),
        },
    }
    if status_path:
        paths[status_path] = {
            'get': _operation(
                'getStatus',
                'Health check: database, broker, backlog (no user header needed)',
                {
                    '200': _json('All parts are up.', _schema('Status')),
                    '503': _json('A part is down (named in the body).', _schema('Status')),
                },
            )
        }
    if metrics_path:
        paths[metrics_path] = {
            'get': _operation(
                'getMetrics',
                'Prometheus metrics of every process of this host (no user header needed)',
                {
                    '200': {
                        'description': 'The Prometheus text exposition format.',
                        'content': {'text/plain': {'schema': {'type': 'string'}}},
                    }
                },
            )
        }
    return {
        'openapi': OPENAPI_VERSION,
        'info': {
            'title': 'Pacifica Notifications',
            'version': __version__,
            'description': (
                'Routes Pacifica data-availability CloudEvents to subscribers. Every answer but the metrics is '
                'JSON, errors included; an unknown path is 404 and a method a path does not have is 405.'
            ),
            'license': {'name': 'LGPL-3.0-or-later', 'identifier': 'LGPL-3.0-or-later'},
        },
        'paths': paths,
        'components': {
            'parameters': {
                'RemoteUser': {
                    'name': config.user_header,
                    'in': 'header',
                    'required': False,
                    'description': (
                        'The remote user, set by the authenticating proxy; the default user when missing. '
                        'Longer than 255 characters (once trimmed) is 400.'
                    ),
                    'schema': {'type': 'string'},
                },
                'Uuid': {'name': 'uuid', 'in': 'path', 'required': True, 'schema': UUID},
                'Limit': {
                    'name': 'limit',
                    'in': 'query',
                    'required': False,
                    'schema': {
                        'type': 'integer',
                        'minimum': 1,
                        'maximum': history.MAX_LIMIT,
                        'default': history.DEFAULT_LIMIT,
                    },
                },
                'Before': {
                    'name': 'before',
                    'in': 'query',
                    'required': False,
                    'description': 'The `next` of the previous page.',
                    'schema': {'type': 'string'},
                },
                'State': {'name': 'state', 'in': 'query', 'required': False, 'schema': STATE},
            },
            'schemas': {
                'SubscriptionFields': subscriptions.SCHEMA,
                'SubscriptionCreate': {
                    'allOf': [_schema('SubscriptionFields')],
                    'required': list(subscriptions.REQUIRED),
                },
                'SubscriptionChange': _change_schema(),
                'SecretRotation': subscriptions.ROTATE_SCHEMA,
                'Replay': REPLAY,
                'Subscription': SUBSCRIPTION,
                'Secret': SECRET,
                'Accepted': ACCEPTED,
                'BatchAccepted': BATCH_ACCEPTED,
                'DeliveryFields': DELIVERY_FIELDS,
                'Deliveries': DELIVERIES,
                'EventView': EVENT_VIEW,
                'ReplayQueued': REPLAY_QUEUED,
                'Status': STATUS,
                'Error': ERROR,
            },
            'responses': {
                'BadRequest': _error('The request is wrong, as the message says (a field, a parameter, the body).'),
                'NotVisible': _error("Another user's, deleted, or absent: the three are indistinguishable."),
                'NotFound': _error('The path names nothing here.'),
                'Conflict': _error('The subscription cannot do that now, as the message says.'),
                'LengthRequired': _error('A body sent with neither `Content-Length` nor chunked encoding.'),
                'TooLarge': _error('The body is larger than `max_request_bytes`.'),
                'UnsupportedMediaType': _error('The body is not of a media type this operation takes.'),
                'Unavailable': _error('The database is unavailable; nothing was done: try again shortly.'),
            },
        },
    }
