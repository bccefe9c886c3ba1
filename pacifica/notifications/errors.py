"""Errors a client caused, each carrying the HTTP status it deserves."""

from __future__ import annotations


class ClientError(Exception):
    """The request cannot be served as sent (400 unless a subclass says otherwise)."""

    status = 400


class NotVisible(ClientError):
    """The subscription is another user's, deleted, or absent: indistinguishable on purpose."""

    status = 403


class UnsupportedMediaType(ClientError):
    """The body is not declared as JSON."""

    status = 415


class Conflict(ClientError):
    """The request clashes with the state of what it names (a replay already under way, say)."""

    status = 409
