"""Signing secrets at rest: encrypted with ``secret_key`` when one is set.

Encryption is Fernet, from the ``cryptography`` package (pyca): authenticated
(AES-128-CBC with an HMAC-SHA256 over it), maintained, and with a key type
that also rotates (``MultiFernet``: the first key of ``secret_key`` seals,
every key opens).  A hand-written cipher is the one thing not to write
ourselves.  ``cryptography`` is imported only when a key is configured.

A sealed secret is stored as ``fernet:<token>``; a secret stored without a
key is stored as it is, and stays readable after a key is set
(``pacifica-notifications-cmd dbsync`` seals those).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .config import settings

#: What a sealed secret starts with in the database.
SEALED = 'fernet:'

NO_KEY_WARNING = (
    'signing secrets are stored unencrypted: set [notifications] secret_key (SECRET_KEY) '
    'so that a database dump alone does not reveal them'
)


class SealError(Exception):
    """A stored secret cannot be opened with the configured keys."""


def is_sealed(stored: str | None) -> bool:
    """Whether a stored secret is sealed (encrypted), rather than kept as it is."""
    return stored is not None and stored.startswith(SEALED)


@lru_cache(maxsize=8)
def _cipher(keys: tuple[str, ...]) -> Any:
    from cryptography.fernet import Fernet, MultiFernet

    return MultiFernet([Fernet(key.encode('ascii')) for key in keys])


def seal(secret: str) -> str:
    """The secret as stored: sealed with the first key of ``secret_key``, or as it is without one."""
    keys = settings().secret_key
    if not keys:
        return secret
    return SEALED + _cipher(keys).encrypt(secret.encode('utf-8')).decode('ascii')


def unseal(stored: str) -> str:
    """The secret a stored value holds; raise :class:`SealError` if no configured key opens it."""
    if not is_sealed(stored):
        return stored
    return _open(stored, settings().secret_key)


@lru_cache(maxsize=65536)
def _open(stored: str, keys: tuple[str, ...]) -> str:
    if not keys:
        raise SealError('the signing secrets are encrypted, but no secret_key is configured')
    from cryptography.fernet import InvalidToken

    try:
        return _cipher(keys).decrypt(stored[len(SEALED) :].encode('ascii')).decode('utf-8')
    except InvalidToken:
        raise SealError('no key of secret_key opens the stored signing secrets (a wrong or retired key?)') from None


def reseal(stored: str) -> str:
    """The stored value as it should be now: sealed with the first key of ``secret_key``.

    Unchanged when it already is, or when no key is set; raises :class:`SealError`
    when no configured key opens it.
    """
    keys = settings().secret_key
    if not keys:
        return stored
    if is_sealed(stored):
        from cryptography.fernet import InvalidToken

        try:
            _cipher(keys[:1]).decrypt(stored[len(SEALED) :].encode('ascii'))
            return stored
        except InvalidToken:
            pass
    return seal(unseal(stored))
