"""An index of jsonpath expressions: which few could match an event, found without trying them all.

Trying every subscription's expression against every event costs tens of
microseconds per expression, which is far too slow for many thousands of
subscriptions.  Most expressions, though, can only match an event that holds
a certain string or number somewhere (``@.destinationTable = "Files"`` needs
the value ``"Files"``, ``@.value = 54`` a number equal to 54) or a certain key
(``$.data`` needs a key ``data``, ``@.size > 5`` a key ``size``).  This module
reads those **requirements** off each parsed expression, soundly: an event
that lacks one of them cannot match, whatever its shape.  Each expression is
filed under one of its requirements; an event's strings and keys then name
the few candidates, whose requirements are checked as a set and which are
finally matched for real (:mod:`pathcompiler`), so the result is exactly jsonpath2's.
Expressions with no requirement are tried on every event.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from jsonpath2.expressions.operator import (
    AndVariadicOperatorExpression,
    BinaryOperatorExpression,
    EqualBinaryOperatorExpression,
    OrVariadicOperatorExpression,
)
from jsonpath2.expressions.some import SomeExpression
from jsonpath2.node import Node
from jsonpath2.nodes.current import CurrentNode
from jsonpath2.nodes.recursivedescent import RecursiveDescentNode
from jsonpath2.nodes.root import RootNode
from jsonpath2.nodes.subscript import SubscriptNode
from jsonpath2.path import Path
from jsonpath2.subscripts.filter import FilterSubscript
from jsonpath2.subscripts.objectindex import ObjectIndexSubscript

#: A requirement, to be found anywhere in the event: ('key', name), ('value', text) or ('number', value).
Token = tuple[str, Any]

T = TypeVar('T', bound=Hashable)


def requirements(path: Path) -> frozenset[Token]:
    """What any event this expression matches must hold somewhere (a sound under-approximation)."""
    return frozenset(_node_requirements(path.root_node))


def _node_requirements(node: Any) -> set[Token]:
    """Requirements of a chain of nodes: every step's, up to the first step this analysis does not know."""
    found: set[Token] = set()
    while node is not None:
        if isinstance(node, SubscriptNode):
            parts = [_subscript_requirements(subscript) for subscript in node.subscripts]
            if parts:
                found |= set.intersection(*parts)  # a union of subscripts: what every one of them needs
        elif not isinstance(node, (RootNode, CurrentNode, RecursiveDescentNode)):
            break
        node = getattr(node, 'next_node', None)
    return found


def _subscript_requirements(subscript: Any) -> set[Token]:
    if isinstance(subscript, ObjectIndexSubscript) and isinstance(subscript.index, str):
        return {('key', subscript.index)}
    if isinstance(subscript, FilterSubscript):
        return _expression_requirements(subscript.expression)
    return set()


def _expression_requirements(expression: Any) -> set[Token]:
    """Requirements of a filter expression: every operand's for ``and``, the shared ones for ``or``.

    A comparison holds only if each path in it finds a value; ``=`` with a
    string or number literal also needs a value equal to it.  ``not`` gives
    nothing.
    """
    if isinstance(expression, AndVariadicOperatorExpression):
        return set().union(*(_expression_requirements(part) for part in expression.expressions))
    if isinstance(expression, OrVariadicOperatorExpression):
        parts = [_expression_requirements(part) for part in expression.expressions]
        return set.intersection(*parts) if parts else set()
    if isinstance(expression, SomeExpression):
        operand = expression.next_node_or_value
        return _node_requirements(operand) if isinstance(operand, Node) else set()
    if isinstance(expression, BinaryOperatorExpression):
        found: set[Token] = set()
        for side in (expression.left_node_or_value, expression.right_node_or_value):
            if isinstance(side, Node):
                found |= _node_requirements(side)
            elif isinstance(expression, EqualBinaryOperatorExpression):
                token = _value_token(side)
                if token is not None:
                    found.add(token)
        return found
    return set()


def _value_token(value: Any) -> Token | None:
    """The token a value equal to ``value`` puts in an event: strings by text, numbers (and booleans) by value.

    ``1 == 1.0 == True`` in Python, so numbers are compared as floats; an
    integer too large for a float gives no token, on either side.
    """
    if isinstance(value, str):
        return ('value', value)
    if isinstance(value, (bool, int, float)):
        try:
            return ('number', float(value))
        except OverflowError:
            return None
    return None


def tokens(document: Any) -> set[Token]:
    """Every key, string and number anywhere in a JSON document."""
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
        else:
            token = _value_token(node)
            if token is not None:
                found.add(token)
    return found


class PathIndex(dict[T, frozenset[Token]]):
    """Items (expressions, or anything hashable) filed under one requirement each.

    ``candidates(event_tokens)`` yields every item whose requirements the
    event meets: only those can match.  An item is filed under whichever of
    its requirements has the fewest items so far, so items that share a
    common requirement (``"Transactions.project"``) spread over their rare
    ones (the project's id).  Adding and removing an item costs the same
    whatever the number of items.
    """

    def __init__(self, items: Iterable[tuple[T, frozenset[Token]]] = ()):
        super().__init__()
        self._by_token: dict[Token, dict[T, None]] = {}
        self._filed: dict[T, Token | None] = {}
        self._anywhere: dict[T, None] = {}
        for item, needs in items:
            self.add(item, needs)

    def add(self, item: T, needs: frozenset[Token]) -> None:
        """File ``item`` (again, if it was filed) under one of its requirements."""
        self.remove(item)
        self[item] = needs
        if not needs:
            self._anywhere[item] = None
            self._filed[item] = None
            return
        by_token = self._by_token
        token = min(needs, key=lambda need: (len(by_token.get(need, ())), need[0] == 'key', -len(str(need[1]))))
        by_token.setdefault(token, {})[item] = None
        self._filed[item] = token

    def remove(self, item: T) -> None:
        """Forget ``item`` (nothing happens if it is not filed)."""
        if item not in self._filed:
            return
        token = self._filed.pop(item)
        del self[item]
        if token is None:
            del self._anywhere[item]
            return
        bucket = self._by_token[token]
        del bucket[item]
        if not bucket:
            del self._by_token[token]

    def candidates(self, event_tokens: set[Token]) -> list[T]:
        """The items whose every requirement is among ``event_tokens``."""
        found = list(self._anywhere)
        by_token = self._by_token
        for token in event_tokens:
            for item in by_token.get(token, ()):
                if self[item] <= event_tokens:
                    found.append(item)
        return found
