"""Secrets in a subscription's auth settings: kept for delivery, never shown back."""

from __future__ import annotations

#: What a response shows instead of a stored password or credential.
SECRET_MASK = '********'

#: Per auth type: the settings key and the field in it that is secret.
AUTH_SECRETS = {'basic': ('basic', 'password'), 'header': ('header', 'credentials')}


def mask_auth(auth: dict) -> dict:
    """Return ``auth`` with its secret replaced by :data:`SECRET_MASK`."""
    if auth.get('type') not in AUTH_SECRETS:
        return dict(auth)
    key, secret = AUTH_SECRETS[auth['type']]
    return {**auth, key: {**auth[key], secret: SECRET_MASK}}
