"""Standard Webhooks signatures: the secret's format, and the headers that sign a delivery.

A target verifies a delivery with any Standard Webhooks library: the HMAC
(SHA-256, keyed with the secret's bytes) of ``<webhook-id>.<webhook-timestamp>.<body>``
over the exact bytes sent, base64-encoded after ``v1,``.  During a rotation
a delivery carries one signature per secret, separated by a space.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from functools import lru_cache

#: What every secret starts with.
PREFIX = 'whsec_'

#: Bytes of a secret the service makes.
SECRET_BYTES = 32

#: Bytes a secret given by its owner may have (the specification's range).
SECRET_RANGE = (24, 64)


class BadSecret(ValueError):
    """A secret not in the Standard Webhooks format."""


def new_secret() -> str:
    """A fresh secret: ``whsec_`` and the base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode('ascii')


def check_secret(secret: object) -> str:
    """Return ``secret`` if it is ``whsec_`` and the base64 of 24 to 64 bytes; else raise :class:`BadSecret`."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        raise BadSecret(f'a signing secret is {PREFIX!r} followed by base64')
    try:
        size = len(_key(secret))
    except (binascii.Error, ValueError):
        raise BadSecret(f'the part after {PREFIX!r} is not base64') from None
    if not SECRET_RANGE[0] <= size <= SECRET_RANGE[1]:
        raise BadSecret(f'a signing secret holds {SECRET_RANGE[0]} to {SECRET_RANGE[1]} bytes, not {size}')
    return secret


@lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    return base64.b64decode(secret[len(PREFIX) :], validate=True)


def signature(secrets_in_use: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, space-separated."""
    signed = f'{msg_id}.{timestamp}.'.encode() + body
    return ' '.join(
        'v1,' + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode('ascii')
        for secret in secrets_in_use
    )


def headers(secrets_in_use: Sequence[str], msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt, its timestamp taken now."""
    timestamp = int(time.time() if now is None else now)
    signed = {'webhook-id': msg_id, 'webhook-timestamp': str(timestamp)}
    if secrets_in_use:
        signed['webhook-signature'] = signature(secrets_in_use, msg_id, timestamp, body)
    return signed
