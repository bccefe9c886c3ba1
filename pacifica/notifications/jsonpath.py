"""The jsonpath interface module.

Subscriptions hold jsonpath2 expressions.  Parsing one costs about a
millisecond while matching costs microseconds, so parsed expressions are
cached by their text and every event reuses them.

An expression that does not start with ``$`` is taken relative to the root:
the seed's ``data`` means ``$.data``.  jsonpath2 filters apply to the node
they follow: ``$.data[*][?(@.mimetype = "text/plain")]`` filters the items of
the ``data`` list, while ``$.data[?(...)]`` tests the list itself and matches
nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath2.path import Path

#: Distinct expressions kept parsed; well above the subscriptions of a large site.
CACHE_SIZE = 65536


class JsonPathError(ValueError):
    """The text is not a jsonpath2 expression."""


def normalize(jsonpath_str: str) -> str:
    """Return the expression rooted at ``$`` (``data`` becomes ``$.data``)."""
    text = jsonpath_str.strip()
    if text.startswith('$'):
        return text
    return f'${text}' if text.startswith('[') else f'$.{text}'


@lru_cache(maxsize=CACHE_SIZE)
def parse(jsonpath_str: str) -> Path:
    """Parse the json path (once per distinct text) or raise :class:`JsonPathError`."""
    try:
        return Path.parse_str(normalize(jsonpath_str))
    except Exception as exc:  # noqa: BLE001 - jsonpath2/antlr raise several kinds for bad input
        message = str(exc).strip() or type(exc).__name__
        raise JsonPathError(f'invalid jsonpath {jsonpath_str!r}: {message}') from None


def find(expr: str | Path, data: Any) -> list[Any]:
    """Match the expression in the data and return the matched values."""
    path = parse(expr) if isinstance(expr, str) else expr
    return [match.current_value for match in path.match(data)]


def matches(expr: str | Path, data: Any) -> bool:
    """Return whether the expression finds anything in the data (the consumer rule)."""
    path = parse(expr) if isinstance(expr, str) else expr
    return next(iter(path.match(data)), None) is not None
