"""Subscriptions (event matches): the rules for creating, reading and changing them.

The REST layer turns HTTP into calls here and :class:`ClientError` back into
statuses; nothing here knows about HTTP.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from urllib.parse import urlparse

from . import cloudevents, sealing, signing, statements
from .bodies import Checker
from .config import settings
from .errors import ClientError, NotVisible
from .jsonpath import JsonPathError
from .jsonpath import parse as parse_jsonpath
from .masking import AUTH_SECRETS, SECRET_MASK
from .models import DELIVERY_MODES, EventMatch, utcnow

#: Fields the service sets; a client may echo them back unchanged, never change them.
READ_ONLY = ('uuid', 'user', 'created', 'updated', 'deleted', 'version')

#: Fields a new subscription must have.
REQUIRED = ('name', 'jsonpath', 'target_url')

_NO_CRLF = r'^[^\r\n]*$'

AUTH_SCHEMA = {
    'type': 'object',
    'properties': {
        'type': {'enum': sorted(AUTH_SECRETS)},
        'basic': {
            'type': 'object',
            'properties': {
                'username': {'type': 'string', 'pattern': _NO_CRLF},
                'password': {'type': 'string', 'pattern': _NO_CRLF},
            },
            'required': ['username', 'password'],
            'additionalProperties': False,
        },
        'header': {
            'type': 'object',
            'properties': {
                'type': {'type': 'string', 'pattern': r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
                'credentials': {'type': 'string', 'pattern': _NO_CRLF},
            },
            'required': ['type', 'credentials'],
            'additionalProperties': False,
        },
    },
    'additionalProperties': False,
    'allOf': [
        {
            'if': {'required': ['type'], 'properties': {'type': {'const': 'basic'}}},
            'then': {'required': ['basic'], 'properties': {'header': False}},
        },
        {
            'if': {'required': ['type'], 'properties': {'type': {'const': 'header'}}},
            'then': {'required': ['header'], 'properties': {'basic': False}},
        },
        {'if': {'not': {'required': ['type']}}, 'then': {'maxProperties': 0}},
    ],
}

#: What a client may send (read-only fields are handled before this).
SCHEMA = {
    'type': 'object',
    'properties': {
        'name': {'type': 'string', 'minLength': 1, 'maxLength': 255},
        'jsonpath': {'type': 'string', 'minLength': 1, 'maxLength': 4096},
        'target_url': {'type': 'string', 'minLength': 1, 'maxLength': 2048},
        'auth': AUTH_SCHEMA,
        'extensions': {'type': 'object'},
        'delivery_mode': {'enum': list(DELIVERY_MODES)},
        'signing_secret': {'type': 'string', 'maxLength': 200},
        'disabled': {'type': 'null'},
        'error': {'type': 'null'},
    },
    'additionalProperties': False,
}

#: What ``POST /eventmatch/<uuid>/secret/rotate`` may send: the new secret, or nothing to have one made.
ROTATE_SCHEMA = {
    'type': 'object',
    'properties': {'key': {'type': 'string', 'maxLength': 200}},
    'additionalProperties': False,
}

_CHECKER = Checker(SCHEMA)
_ROTATE_CHECKER = Checker(ROTATE_SCHEMA)


#: Fields stored as plain text, where SQL databases cannot all keep a NUL character.
TEXT_FIELDS = ('name', 'jsonpath', 'target_url', 'error')


def _check_signing_secret(key: str, value: object) -> str:
    try:
        return signing.check_secret(value)
    except signing.BadSecret as exc:
        raise ClientError(f'{key}: {exc}') from None


def validate(body: dict) -> None:
    """Check a client's fields against :data:`SCHEMA`, the jsonpath parser, URL and CloudEvents rules."""
    _CHECKER.check(body)
    for key in TEXT_FIELDS:
        if isinstance(body.get(key), str) and '\x00' in body[key]:
            raise ClientError(f'{key}: must not contain NUL characters')
    if 'jsonpath' in body:
        try:
            parse_jsonpath(body['jsonpath'])
        except JsonPathError as exc:
            raise ClientError(f'jsonpath: {exc}') from None
    if 'extensions' in body:
        try:
            cloudevents.check_added_extensions(body['extensions'])
        except ClientError as exc:
            raise ClientError(f'extensions: {exc}') from None
    if 'signing_secret' in body:
        _check_signing_secret('signing_secret', body['signing_secret'])
    if 'target_url' in body:
        try:
            url = urlparse(body['target_url'])
            host = url.hostname
        except ValueError:
            host = None
        if host is None or url.scheme not in ('http', 'https'):
            raise ClientError(f'target_url: {body["target_url"]!r} is not an absolute http(s) URL')


def _drop_read_only(body: dict, current: dict | None) -> dict:
    """Return ``body`` without read-only fields, refusing any that would change."""
    changed = [key for key in READ_ONLY if key in body and (current is None or body[key] != current[key])]
    if changed:
        raise ClientError(f'read-only field(s) cannot be set: {", ".join(changed)}')
    return {key: value for key, value in body.items() if key not in READ_ONLY}


def _unmask(auth: dict, stored: dict) -> dict:
    """Keep the stored secret where the client sent back the mask it was shown."""
    if auth.get('type') != stored.get('type') or auth.get('type') not in AUTH_SECRETS:
        return auth
    key, secret = AUTH_SECRETS[auth['type']]
    if auth[key][secret] != SECRET_MASK:
        return auth
    return {**auth, key: {**auth[key], secret: stored[key][secret]}}


def _apply(sub: EventMatch, fields: dict) -> None:
    for key in ('name', 'jsonpath', 'target_url', 'delivery_mode', 'disabled', 'error'):
        if key in fields:
            setattr(sub, key, fields[key])
    if 'auth' in fields:
        sub.auth = json.dumps(_unmask(fields['auth'], sub.auth_dict()))
    if 'extensions' in fields:
        sub.extensions = json.dumps(fields['extensions'])


def create(user: str, body: dict) -> EventMatch:
    """Create a subscription owned by ``user`` from a client's body."""
    fields = _drop_read_only(body, None)
    validate(fields)
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        raise ClientError(f'missing required field(s): {", ".join(missing)}')
    now = utcnow()
    sub = EventMatch(user=user, created=now, updated=now)
    _apply(sub, fields)
    if 'signing_secret' in fields:
        sub.signing_secret = sealing.seal(fields['signing_secret'])
    statements.insert([sub])
    return sub


def parse_uuid(value: str) -> uuid.UUID:
    """Parse a subscription UUID from a URL path."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ClientError(f'not a UUID: {value!r}') from None


def visible(user: str, sub_uuid: str) -> EventMatch:
    """Return ``user``'s live subscription, or raise :class:`NotVisible`."""
    sub = EventMatch.get_or_none(EventMatch.uuid == parse_uuid(sub_uuid))
    if sub is None or sub.user != user or sub.deleted is not None:
        raise NotVisible(f'subscription {sub_uuid} is not yours to see or change')
    return sub


def live_for(user: str) -> list[EventMatch]:
    """Return ``user``'s subscriptions that are not deleted, oldest first."""
    query = EventMatch.select().where((EventMatch.user == user) & EventMatch.deleted.is_null())
    # MySQL's default collation compares names without case or accents; ownership is exact.
    return [sub for sub in query.order_by(EventMatch.created, EventMatch.uuid) if sub.user == user]


def update(sub: EventMatch, body: dict) -> EventMatch:
    """Change the fields a client sent; read-only ones may only be echoed back."""
    fields = _drop_read_only(body, sub.to_hash())
    if 'signing_secret' in fields:
        raise ClientError(f'signing_secret: change it with POST /eventmatch/{sub.uuid}/secret/rotate')
    validate(fields)
    _apply(sub, fields)
    sub.updated = utcnow()
    sub.save()
    return sub


def delete(sub: EventMatch) -> EventMatch:
    """Soft-delete: the row stays for the event log, the subscription stops."""
    sub.deleted = sub.updated = utcnow()
    sub.save()
    return sub


def secret(sub: EventMatch) -> dict:
    """The subscription's current signing secret, for its owner: ``{"key": "whsec_..."}``."""
    return {'key': sealing.unseal(sub.signing_secret)}


def rotate(sub: EventMatch, body: dict) -> dict:
    """Give the subscription a new signing secret (``body["key"]``, or a fresh one) and return it.

    For ``secret_rotation_grace`` seconds deliveries are signed with the old
    secret too, so a subscriber can change over without missing a delivery.
    """
    _ROTATE_CHECKER.check(body)
    new = _check_signing_secret('key', body['key']) if 'key' in body else signing.new_secret()
    now = utcnow()
    grace = settings().secret_rotation_grace
    sub.previous_secret = sub.signing_secret if grace else None
    sub.previous_secret_until = now + timedelta(seconds=grace) if grace else None
    sub.signing_secret = sealing.seal(new)
    sub.updated = now
    sub.save()
    return {'key': new}


def reseal_all() -> int:
    """Store every signing secret sealed with the first key of ``secret_key``; return how many changed."""
    changed = 0
    for sub in EventMatch.select(EventMatch.uuid, EventMatch.signing_secret, EventMatch.previous_secret):
        new = {
            name: sealing.reseal(value)
            for name, value in (('signing_secret', sub.signing_secret), ('previous_secret', sub.previous_secret))
            if value
        }
        if any(new[name] != getattr(sub, name) for name in new):
            EventMatch.update(**new).where(EventMatch.uuid == sub.uuid).execute()
            changed += 1
    return changed


def check_secrets() -> None:
    """Raise :class:`sealing.SealError` if the configured keys cannot open the stored signing secrets.

    One sealed secret is tried: they are all sealed with the same keys
    (``dbsync`` reseals them when the first key changes).
    """
    sample = EventMatch.select(EventMatch.signing_secret).where(EventMatch.signing_secret.startswith(sealing.SEALED))
    row = sample.first()
    if row is not None:
        sealing.unseal(row.signing_secret)
