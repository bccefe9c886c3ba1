"""CherryPy module containing classes for the REST interface.

Handlers turn HTTP into calls on :mod:`subscriptions` and :mod:`intake` and
their results back into JSON; every error, expected or not, leaves as a JSON
object with ``status`` and ``message``.
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import logging
import re
import sys
from typing import Any, Callable

import cherrypy
from peewee import InterfaceError, OperationalError

from . import __version__, cloudevents, history, intake, metrics, models, replay, subscriptions
from .config import settings
from .errors import ClientError, UnsupportedMediaType

LOG = logging.getLogger(__name__)

#: CloudEvents' structured and batched media types (HTTP protocol binding).
STRUCTURED = 'application/cloudevents+json'
BATCH = 'application/cloudevents-batch+json'

#: Media types accepted as JSON bodies (parameters such as charset are allowed).
JSON_TYPES = ('application/json', STRUCTURED)

#: Deepest nesting accepted in a body; real events nest three or four levels.
MAX_DEPTH = 64


def encode_text(thing_obj: Any) -> bytes:
    """Encode the object as UTF-8 JSON bytes (kept for the seed's module reference)."""
    return json.dumps(thing_obj, ensure_ascii=False).encode('utf-8')


def _reject_constant(name: str) -> None:
    raise ValueError(f'{name} is not valid JSON')


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float('inf'), float('-inf')):
        raise ValueError(f'number {text[:40]} is too large')
    return value


#: A lone UTF-16 surrogate: JSON can escape one (``"\\ud800"``), but it is not text.
_SURROGATE = re.compile('[\ud800-\udfff]')


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion; refuse a key or string that is not text."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for pair in node.items() for child in pair)
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
        elif isinstance(node, str) and _SURROGATE.search(node):
            raise ClientError('body holds a lone surrogate (\\ud800-\\udfff), which is not text')
    return deepest


#: A JSON escape of a UTF-16 surrogate, the only way a body can hold one.
_SURROGATE_ESCAPE = re.compile(rb'\\u[dD][89a-fA-F]')


def _may_nest_or_hold_surrogates(raw: bytes) -> bool:
    """Whether the parsed body needs :func:`_depth`'s walk: a byte scan rules it out for most bodies.

    Nesting needs an opening bracket per level, and a surrogate needs an escape.
    """
    return raw.count(b'{') + raw.count(b'[') >= MAX_DEPTH or _SURROGATE_ESCAPE.search(raw) is not None


def media_type(content_type: str) -> str:
    """The media type of a ``Content-Type`` value, without parameters, in lower case."""
    return content_type.split(';', 1)[0].strip().lower()


def check_media_type(content_type: str) -> None:
    """Refuse (415) a body not declared as JSON."""
    if media_type(content_type) not in JSON_TYPES:
        raise UnsupportedMediaType(f'Content-Type must be application/json, not {content_type or "missing"!r}')


def parse_json(raw: bytes) -> Any:
    """Parse a body as JSON (any value), or raise a :class:`ClientError` saying why."""
    try:
        body = json.loads(raw.decode('utf-8'), parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise ClientError('body is not valid UTF-8') from None
    except RecursionError:
        raise ClientError(f'body nests deeper than {MAX_DEPTH} levels') from None
    except ValueError as exc:
        raise ClientError(f'body is not valid JSON: {exc}') from None
    if _may_nest_or_hold_surrogates(raw) and _depth(body) > MAX_DEPTH:
        raise ClientError(f'body nests deeper than {MAX_DEPTH} levels')
    return body


def parse_json_object(raw: bytes) -> dict:
    """Parse a body as one JSON object, or raise a :class:`ClientError` saying why."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ClientError(f'body must be a JSON object, not {type(body).__name__}')
    return body


def read_json_object() -> dict:
    """Read this request's body as a JSON object, or raise a :class:`ClientError` saying why."""
    check_media_type(cherrypy.request.headers.get('Content-Type', ''))
    return parse_json_object(cherrypy.request.body.read())


def _has_body() -> bool:
    """Whether this request sent a body (sized, or chunked)."""
    headers = cherrypy.request.headers
    return bool(headers.get('Transfer-Encoding')) or int(headers.get('Content-Length') or 0) > 0


def get_remote_user() -> str:
    """Get the remote user from the configured request header, else the default user."""
    return remote_user(cherrypy.request.headers.get(settings().user_header, ''))


def remote_user(header_value: str) -> str:
    """The user a request's user header names (the default user if it names none)."""
    user = header_value.strip()
    if len(user) > 255:
        raise ClientError('remote user name is longer than 255 characters')
    if '\x00' in user:
        raise ClientError('remote user name contains a NUL character')
    return user or settings().default_user


def client_errors(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`ClientError` from a handler into the HTTP error it names."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        repeated = sorted(name for name, value in kwargs.items() if isinstance(value, list))  # ?a=1&a=2
        if repeated:
            raise cherrypy.HTTPError(400, f'query parameter(s) given more than once: {", ".join(repeated)}')
        try:
            return handler(*args, **kwargs)
        except ClientError as exc:
            raise cherrypy.HTTPError(exc.status, str(exc)) from None

    # CherryPy reads the handler's parameters to turn a wrong path or query
    # into 404/400; it does not follow ``__wrapped__``, so show it the real ones.
    wrapper.__signature__ = inspect.signature(handler)  # type: ignore[attr-defined]
    return wrapper


class EventMatch:
    """CherryPy EventMatch endpoint: one user's subscriptions."""

    exposed = True
    json_schema = subscriptions.SCHEMA

    @staticmethod
    def _http_get(event_uuid: str) -> models.EventMatch:
        """Internal get subscription by UUID (the caller's own) and return the peewee obj."""
        return subscriptions.visible(get_remote_user(), event_uuid)

    @cherrypy.tools.json_out()
    @client_errors
    def GET(
        self,
        event_uuid: str | None = None,
        part: str | None = None,
        *,
        limit: str | None = None,
        before: str | None = None,
        state: str | None = None,
    ) -> dict | list[dict]:
        """Return one subscription (its signing secret, its deliveries), or the caller's live subscriptions."""
        if part is not None and part not in ('secret', 'deliveries'):
            raise cherrypy.NotFound()
        if part == 'deliveries':
            return history.deliveries(self._http_get(event_uuid or ''), limit, before, state)
        if (limit, before, state) != (None, None, None):
            raise ClientError('limit, before and state are query parameters of /eventmatch/<uuid>/deliveries only')
        if event_uuid is None:
            return [sub.to_hash() for sub in subscriptions.live_for(get_remote_user())]
        if part is None:
            return self._http_get(event_uuid).to_hash()
        return subscriptions.secret(self._http_get(event_uuid))

    @cherrypy.tools.json_out()
    @client_errors
    def POST(self, event_uuid: str | None = None, part: str | None = None, action: str | None = None) -> dict:
        """Create a subscription owned by the caller; rotate a subscription's signing secret; or replay to it."""
        if event_uuid is None:
            user = get_remote_user()
            return subscriptions.create(user, read_json_object()).to_hash()
        if (part, action) not in (('secret', 'rotate'), ('replay', None)):
            raise cherrypy.NotFound()
        sub = self._http_get(event_uuid)
        if part == 'replay':
            count, work = replay.replay(sub, read_json_object())
            replay.queue(sub.user, work)
            return {'queued': count}
        body = read_json_object() if _has_body() else {}
        return subscriptions.rotate(sub, body)

    @cherrypy.tools.json_out()
    @client_errors
    def PUT(self, event_uuid: str) -> dict:
        """Update the given fields of a subscription."""
        sub = self._http_get(event_uuid)
        return subscriptions.update(sub, read_json_object()).to_hash()

    @cherrypy.tools.json_out()
    @client_errors
    def DELETE(self, event_uuid: str) -> dict:
        """Delete the subscription (it stays in the log, marked deleted)."""
        return subscriptions.delete(self._http_get(event_uuid)).to_hash()


class ReceiveEvent:
    """CherryPy Receive Event object: the producer's way in."""

    exposed = True
    event_json_schema: dict = {}

    @cherrypy.tools.json_out()
    @client_errors
    def POST(self) -> dict:
        """Store the event (or a batch of them) before answering, then hand it to the pipeline.

        An event posted again (same ``source`` and id) is not stored twice:
        the answer names the first copy and says it was a duplicate.
        """
        headers = {name.lower(): value for name, value in cherrypy.request.headers.items()}
        content_type = headers.get('content-type', '')
        try:
            check_receive_media_type(content_type, headers)
            return accept_request(content_type, headers, cherrypy.request.body.read())
        except ClientError:
            metrics.received('rejected')
            raise


def check_receive_media_type(content_type: str, headers: dict[str, str]) -> None:
    """Refuse (415) a ``POST /receive`` that is none of the CloudEvents HTTP binding's forms.

    ``headers`` maps lower-case names to values; a ``ce-specversion`` makes a
    binary-mode event, whose body may be of any media type.
    """
    media = media_type(content_type)
    if media in (*JSON_TYPES, BATCH) or 'ce-specversion' in headers:
        return
    raise UnsupportedMediaType(
        f'Content-Type must be application/json, {STRUCTURED} or {BATCH} (or the event sent in binary mode, '
        f'with ce- headers), not {content_type or "missing"!r}'
    )


def accept_request(content_type: str, headers: dict[str, str], raw: bytes) -> dict:
    """Store what a ``POST /receive`` carries, in any form of the CloudEvents HTTP binding, and say what became of it.

    ``headers`` maps lower-case names to values.  A batch is stored whole or
    not at all; an event in binary mode is stored as its structured JSON.
    """
    media = media_type(content_type)
    if media == BATCH:
        return accept_batch(parse_batch(raw))
    if media != STRUCTURED and 'ce-specversion' in headers:
        return accept_event(cloudevents.from_binary(headers, content_type, raw, parse_json))
    event = parse_json_object(raw)
    if media == STRUCTURED:
        cloudevents.validate_structured(event)
    elif cloudevents.is_v1(event):
        cloudevents.validate(event)
    return accept_event(event, raw.decode('utf-8'))


def parse_batch(raw: bytes) -> list[dict]:
    """The events of a ``application/cloudevents-batch+json`` body, each checked; the first bad one named by index."""
    events = parse_json(raw)
    if not isinstance(events, list):
        raise ClientError(f'a batch must be a JSON array of events, not {type(events).__name__}')
    for index, event in enumerate(events):
        try:
            if not isinstance(event, dict):
                raise ClientError(f'must be a JSON object, not {type(event).__name__}')
            cloudevents.validate_structured(event)
        except ClientError as exc:
            raise ClientError(f'batch event {index}: {exc}') from None
    return events


def accept_event(event: dict, text: str | None = None) -> dict:
    """Store an event from ``POST /receive`` (and its JSON ``text`` as sent) and say what became of it."""
    received = intake.receive(event, text)
    metrics.received('duplicate' if received.duplicate else 'stored')
    return {'status': 'accepted', 'uuid': str(received.event.uuid), 'duplicate': received.duplicate}


def accept_batch(events: list[dict]) -> dict:
    """Store a batch in one transaction and say, in order, what became of each event."""
    received = intake.receive_batch(events)
    duplicates = sum(one.duplicate for one in received)
    metrics.received('duplicate', duplicates)
    metrics.received('stored', len(received) - duplicates)
    return {
        'status': 'accepted',
        'events': [{'uuid': str(one.event.uuid), 'duplicate': one.duplicate} for one in received],
    }


class Events:
    """CherryPy Events endpoint: one logged event, for a user it was delivered to."""

    exposed = True

    @cherrypy.tools.json_out()
    @client_errors
    def GET(self, event_uuid: str) -> dict:
        """The event as received and its deliveries to the caller's subscriptions (403 if it matched none)."""
        return history.event_for(get_remote_user(), subscriptions.parse_uuid(event_uuid))


class OpenApi:
    """CherryPy endpoint of ``GET /openapi.json``: the API's OpenAPI 3.1 document (no database, no user)."""

    exposed = True

    @cherrypy.tools.json_out()
    def GET(self) -> dict:
        """The document of every route (:func:`openapi.document`)."""
        from . import openapi

        # The dispatcher reads every punctuation mark in a name as '_': serve the one true path only.
        if cherrypy.request.path_info != openapi.PATH:
            raise cherrypy.NotFound()
        return openapi.document()


class Root:
    """CherryPy Root Object (not itself exposed, so unknown paths are 404)."""

    eventmatch = EventMatch()
    events = Events()
    receive = ReceiveEvent()
    openapi_json = OpenApi()  # /openapi.json: the dispatcher looks '.' up as '_'


def error_body(status: str, message: str) -> dict:
    """The JSON body of every error answer: its status line, why, and our version."""
    return {'status': status, 'message': message, 'version': __version__}


def unexpected_error(exc: BaseException | None) -> tuple[int, str]:
    """Log an unexpected exception and say how to answer it: 503 when the database is down, else 500."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        LOG.warning('database unavailable: %s', exc)
        return 503, 'the database is unavailable; try again shortly'
    cherrypy.log('unexpected error', traceback=True, severity=logging.ERROR)
    return 500, 'internal error; see the server log'


def error_page_default(status: str, message: str, traceback: str, version: str) -> str:
    """The default error page: always JSON, the traceback only when CherryPy shows them."""
    cherrypy.response.headers['Content-Type'] = 'application/json'
    body = error_body(status, html.unescape(message))  # CherryPy escapes it for an HTML page; this is JSON
    if cherrypy.request.show_tracebacks and traceback:
        body['traceback'] = traceback
    return json.dumps(body)


def error_response() -> None:
    """Answer an unexpected exception: 503 when the database is down, else a bare 500."""
    cherrypy.HTTPError(*unexpected_error(sys.exc_info()[1])).set_response()
