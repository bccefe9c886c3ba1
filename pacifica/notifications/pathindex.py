"""An index of jsonpath expressions: which few could match an event, found without trying them all.

Trying every subscription's expression against every event costs tens of
microseconds per expression, which is far too slow for many thousands of
subscriptions.  Most expressions, though, can only match an event that holds
a certain string somewhere (``@.destinationTable = "Files"`` needs the value
``"Files"``) or a certain key (``$.data`` needs a key ``data``).  This module
reads those **requirements** off each parsed expression, soundly: an event
that lacks one of them cannot match, whatever its shape.  Each expression is
filed under one of its requirements; an event's strings and keys then name
the few candidates, whose requirements are checked as a set and which are
finally matched by jsonpath2 itself, so the result is exactly jsonpath2's.
Expressions with no requirement are tried on every event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from jsonpath2.expressions.operator import (
    AndVariadicOperatorExpression,
    EqualBinaryOperatorExpression,
    OrVariadicOperatorExpression,
)
from jsonpath2.nodes.recursivedescent import RecursiveDescentNode
from jsonpath2.nodes.root import RootNode
from jsonpath2.nodes.subscript import SubscriptNode
from jsonpath2.path import Path
from jsonpath2.subscripts.filter import FilterSubscript
from jsonpath2.subscripts.objectindex import ObjectIndexSubscript

#: A requirement: ('key', name) or ('value', text), to be found anywhere in the event.
Token = tuple[str, str]

T = TypeVar('T', bound=Hashable)


def requirements(path: Path) -> frozenset[Token]:
    """What any event this expression matches must hold somewhere (a sound under-approximation)."""
    found: set[Token] = set()
    node: Any = path.root_node
    while node is not None:
        if isinstance(node, SubscriptNode):
            if len(node.subscripts) == 1:
                found |= _subscript_requirements(node.subscripts[0])
        elif not isinstance(node, (RootNode, RecursiveDescentNode)):
            break  # a node this analysis does not know: stop, claiming nothing more
        node = getattr(node, 'next_node', None)
    return frozenset(found)


def _subscript_requirements(subscript: Any) -> set[Token]:
    if isinstance(subscript, ObjectIndexSubscript) and isinstance(subscript.index, str):
        return {('key', subscript.index)}
    if isinstance(subscript, FilterSubscript):
        return _expression_requirements(subscript.expression)
    return set()


def _expression_requirements(expression: Any) -> set[Token]:
    """Requirements of a filter expression: every operand's for ``and``, the shared ones for ``or``."""
    if isinstance(expression, AndVariadicOperatorExpression):
        return set().union(*(_expression_requirements(part) for part in expression.expressions))
    if isinstance(expression, OrVariadicOperatorExpression):
        parts = [_expression_requirements(part) for part in expression.expressions]
        return set.intersection(*parts) if parts else set()
    if isinstance(expression, EqualBinaryOperatorExpression):
        # Only a string can equal a string: a number literal could equal a bool or a float.
        for side in (expression.left_node_or_value, expression.right_node_or_value):
            if isinstance(side, str):
                return {('value', side)}
    return set()


def tokens(document: Any) -> set[Token]:
    """Every key and every string value anywhere in a JSON document."""
    found: set[Token] = set()
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                found.add(('key', key))
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            found.add(('value', node))
    return found


class PathIndex(dict[T, frozenset[Token]]):
    """Items (expressions, or anything hashable) filed under one requirement each.

    ``candidates(event_tokens)`` yields every item whose requirements the
    event meets: only those can match.
    """

    def __init__(self, items: Iterable[tuple[T, frozenset[Token]]] = ()):
        super().__init__()
        self._by_token: dict[Token, list[T]] = defaultdict(list)
        self._anywhere: list[T] = []
        for item, needs in items:
            self.add(item, needs)

    def add(self, item: T, needs: frozenset[Token]) -> None:
        """File ``item`` under its most telling requirement (a value before a key, the longest)."""
        self[item] = needs
        if not needs:
            self._anywhere.append(item)
            return
        key = max(needs, key=lambda token: (token[0] == 'value', len(token[1]), token))
        self._by_token[key].append(item)

    def candidates(self, event_tokens: set[Token]) -> list[T]:
        """The items whose every requirement is among ``event_tokens``."""
        found = list(self._anywhere)
        by_token = self._by_token
        for token in event_tokens:
            for item in by_token.get(token, ()):
                if self[item] <= event_tokens:
                    found.append(item)
        return found
