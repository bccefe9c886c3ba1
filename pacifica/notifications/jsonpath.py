"""The jsonpath interface module.

Subscriptions hold jsonpath2 expressions.  :mod:`pathparser` reads them
into jsonpath2's own trees (leaving what it does not take on to jsonpath2's
slower parser, which also words every error) and :mod:`pathcompiler` turns
those into functions that say whether an expression matches; both give
jsonpath2's answers.  Expressions are cached by their text.

An expression that does not start with ``$`` is taken relative to the root:
the seed's ``data`` means ``$.data``.  jsonpath2 filters apply to the node
they follow: ``$.data[*][?(@.mimetype = "text/plain")]`` filters the items of
the ``data`` list, while ``$.data[?(...)]`` tests the list itself and matches
nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, NamedTuple

from jsonpath2.path import Path

from . import pathcompiler, pathparser

#: Distinct expressions kept parsed; well above the subscriptions of a large site.
CACHE_SIZE = 65536


class JsonPathError(ValueError):
    """The text is not a jsonpath2 expression."""


class Compiled(NamedTuple):
    """An expression parsed and compiled, and which parts of it jsonpath2 does itself."""

    path: Path
    #: Whether the expression finds anything in a document.
    matches: Callable[[Any], bool]
    #: Whether our parser read it (else jsonpath2's did).
    parsed_here: bool
    #: Whether :mod:`pathcompiler` matches it (else jsonpath2 does).
    compiled_here: bool


def normalize(jsonpath_str: str) -> str:
    """Return the expression rooted at ``$`` (``data`` becomes ``$.data``)."""
    text = jsonpath_str.strip()
    if text.startswith('$'):
        return text
    return f'${text}' if text.startswith('[') else f'$.{text}'


def _parse(jsonpath_str: str) -> tuple[Path, bool]:
    """Parse with our parser, or with jsonpath2's when ours leaves the text to it; say which did."""
    text = normalize(jsonpath_str)
    try:
        return pathparser.parse(text), True
    except pathparser.Unsupported:
        pass
    try:
        return Path.parse_str(text), False
    except Exception as exc:  # noqa: BLE001 - jsonpath2/antlr raise several kinds for bad input
        message = str(exc).strip() or type(exc).__name__
        raise JsonPathError(f'invalid jsonpath {jsonpath_str!r}: {message}') from None


@lru_cache(maxsize=CACHE_SIZE)
def parse(jsonpath_str: str) -> Path:
    """Parse the json path (once per distinct text) or raise :class:`JsonPathError`."""
    return _parse(jsonpath_str)[0]


def compile_text(jsonpath_str: str) -> Compiled:
    """Parse and compile an expression (not cached: the caller keeps it) or raise :class:`JsonPathError`."""
    path, parsed_here = _parse(jsonpath_str)
    matches, compiled_here = pathcompiler.compile_checked(path)
    return Compiled(path, matches, parsed_here, compiled_here)


@lru_cache(maxsize=CACHE_SIZE)
def predicate(jsonpath_str: str) -> Callable[[Any], bool]:
    """Whether the expression finds anything in a document, compiled once per distinct text."""
    return compile_text(jsonpath_str).matches


def find(expr: str | Path, data: Any) -> list[Any]:
    """Match the expression in the data and return the matched values."""
    path = parse(expr) if isinstance(expr, str) else expr
    return [match.current_value for match in path.match(data)]


def matches(expr: str | Path, data: Any) -> bool:
    """Return whether the expression finds anything in the data (the consumer rule)."""
    if isinstance(expr, str):
        return predicate(expr)(data)
    return next(iter(expr.match(data)), None) is not None
