"""Checking a client's JSON body against a JSON Schema: the first problem, as a 400 naming its field.

The schemas themselves live with the rules they belong to (:data:`subscriptions.SCHEMA`,
:data:`replay.SCHEMA`); :mod:`openapi` publishes the same objects.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from .errors import ClientError


def _message(error: ValidationError) -> str:
    where = '.'.join(str(part) for part in error.absolute_path) or 'body'
    if error.validator == 'maxProperties':
        return f"{where}: needs a 'type' ('basic' or 'header'), or must be {{}}"
    if error.validator == 'type' and error.validator_value == 'null':
        return f'{where}: can only be set to null (to re-enable the subscription)'
    if error.validator == 'pattern':
        return f'{where}: {error.instance!r} contains characters not allowed here'
    return f'{where}: {error.message}'


class Checker:
    """One schema, compiled once."""

    def __init__(self, schema: dict[str, Any]):
        self.validator = Draft202012Validator(schema)

    def check(self, body: Any) -> None:
        """Raise :class:`ClientError` with the most relevant problem of ``body``, if it has any."""
        error = best_match(self.validator.iter_errors(body))
        if error is not None:
            raise ClientError(_message(error))
