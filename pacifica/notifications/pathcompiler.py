"""jsonpath2 expressions turned into plain Python functions that say whether they match anything.

jsonpath2 matches by building a ``MatchData`` and a new ``SubscriptNode`` for
every value it visits, which costs tens of microseconds an expression.  The
service only needs to know whether an expression finds anything, so
:func:`compile_path` turns a parsed expression into nested closures that walk
the document directly and stop at the first value found.

Each node, subscript and operator does exactly what jsonpath2's own
``match`` and ``evaluate`` do, in the same order and as lazily (so an error
jsonpath2 raises half-way, a slice step of 0, is raised here too): the
comparisons are jsonpath2's own callbacks, ``1 == True`` included, and even
its quirk of reading a path on the right of a comparison only once, for the
first value on the left.  Documents are JSON as ``json.loads`` returns it
(dicts and lists, not other mappings or sequences).  An expression holding
anything else (callable subscripts, a path used as a subscript) is matched
by jsonpath2 itself.  The differential test holds the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jsonpath2.expressions.operator import (
    AndVariadicOperatorExpression,
    NotUnaryOperatorExpression,
    OrVariadicOperatorExpression,
)
from jsonpath2.expressions.some import SomeExpression
from jsonpath2.node import Node
from jsonpath2.nodes.current import CurrentNode
from jsonpath2.nodes.recursivedescent import RecursiveDescentNode
from jsonpath2.nodes.root import RootNode
from jsonpath2.nodes.subscript import SubscriptNode
from jsonpath2.nodes.terminal import TerminalNode
from jsonpath2.path import Path
from jsonpath2.subscripts.arrayindex import ArrayIndexSubscript
from jsonpath2.subscripts.arrayslice import ArraySliceSubscript
from jsonpath2.subscripts.filter import FilterSubscript
from jsonpath2.subscripts.objectindex import ObjectIndexSubscript
from jsonpath2.subscripts.wildcard import WildcardSubscript

from .pathparser import COMPARISONS

#: A compiled node, asked "does the rest of the path find anything?" from the root and the current value.
Found = Callable[[Any, Any], bool]
#: A compiled node as a source of values (a comparison's operands).
Values = Callable[[Any, Any], Iterator[Any]]
#: A compiled subscript: the values it selects from the current value.
Step = Callable[[Any, Any], Iterable[Any]]
#: A compiled filter expression.
Test = Callable[[Any, Any], bool]

_BINARY = frozenset(COMPARISONS.values())

_MISSING = object()


class _NotCompiled(Exception):
    """The expression holds something compiled here does not cover."""


def compile_path(path: Path) -> Callable[[Any], bool]:
    """A function telling whether ``path`` finds anything in a document, as jsonpath2 would."""
    return compile_checked(path)[0]


def compile_checked(path: Path) -> tuple[Callable[[Any], bool], bool]:
    """:func:`compile_path`, and whether it compiled the path (False: jsonpath2 matches it)."""
    try:
        found = _found(path.root_node)
    except (_NotCompiled, RecursionError):
        return (lambda document: next(iter(path.match(document)), _MISSING) is not _MISSING), False
    return (lambda document: found(document, document)), True


def _yes(_root: Any, _current: Any) -> bool:
    return True


def _found(node: Node) -> Found:
    """``node`` and the nodes after it, stopping at the first value they find (jsonpath2's order)."""
    kind = type(node)
    if kind is TerminalNode:
        return _yes
    if kind is RootNode:
        rest = _found(node.next_node)
        return lambda root, _current: rest(root, root)
    if kind is CurrentNode:
        return _found(node.next_node)
    if kind is SubscriptNode:
        rest = _found(node.next_node)
        selects = [_select(subscript, rest) for subscript in node.subscripts]
        if len(selects) == 1:
            return selects[0]
        return lambda root, current: any(select(root, current) for select in selects)
    if kind is RecursiveDescentNode:
        rest = _found(node.next_node)

        def descend(root: Any, current: Any) -> bool:
            if rest(root, current):
                return True
            return any(descend(root, child) for child in _children(current))

        return descend
    raise _NotCompiled(kind.__name__)


def _select(subscript: Any, rest: Found) -> Found:
    """A subscript, then ``rest`` on each value it selects."""
    kind = type(subscript)
    if kind is ObjectIndexSubscript:
        key = subscript.index
        if rest is _yes:
            return lambda _root, current: isinstance(current, dict) and key in current
        return lambda root, current: isinstance(current, dict) and key in current and rest(root, current[key])
    if kind is FilterSubscript:
        test = _test(subscript.expression)
        if rest is _yes:
            return test
        return lambda root, current: test(root, current) and rest(root, current)
    step = _step(subscript)

    def each(root: Any, current: Any) -> bool:
        for value in step(root, current):
            if rest(root, value):
                return True
        return False

    return each


def _values(node: Node) -> Values:
    kind = type(node)
    if kind is TerminalNode:
        return _here
    if kind is RootNode:
        rest = _values(node.next_node)
        return lambda root, _current: rest(root, root)
    if kind is CurrentNode:
        return _values(node.next_node)
    if kind is SubscriptNode:
        return _subscripts(_values(node.next_node), [_step(subscript) for subscript in node.subscripts])
    if kind is RecursiveDescentNode:
        return _descent(_values(node.next_node))
    raise _NotCompiled(kind.__name__)


def _here(_root: Any, current: Any) -> Iterator[Any]:
    yield current


def _subscripts(rest: Values, steps: list[Step]) -> Values:
    if len(steps) == 1:
        (step,) = steps

        def one(root: Any, current: Any) -> Iterator[Any]:
            for value in step(root, current):
                yield from rest(root, value)

        return one

    def each(root: Any, current: Any) -> Iterator[Any]:
        for step in steps:
            for value in step(root, current):
                yield from rest(root, value)

    return each


def _descent(rest: Values) -> Values:
    """The node itself, then every descendant (dict values and list items), depth first."""

    def descend(root: Any, current: Any) -> Iterator[Any]:
        yield from rest(root, current)
        for child in _children(current):
            yield from descend(root, child)

    return descend


def _children(current: Any) -> Iterable[Any]:
    if isinstance(current, dict):
        return current.values()
    if isinstance(current, list):
        return current
    return ()


def _step(subscript: Any) -> Step:
    kind = type(subscript)
    if kind is ObjectIndexSubscript:
        key = subscript.index
        return lambda _root, current: (current[key],) if isinstance(current, dict) and key in current else ()
    if kind is ArrayIndexSubscript:
        index = subscript.index
        return lambda _root, current: _at(current, index)
    if kind is WildcardSubscript:
        return lambda _root, current: _children(current)
    if kind is ArraySliceSubscript:
        return _slice(subscript.start, subscript.end, subscript.step)
    if kind is FilterSubscript:
        test = _test(subscript.expression)
        return lambda root, current: (current,) if test(root, current) else ()
    raise _NotCompiled(kind.__name__)


def _at(current: Any, index: int) -> tuple:
    """The item at ``index`` (negative counts from the end), if ``current`` is a list that has it."""
    if isinstance(current, list):
        if index < 0:
            index += len(current)
            if 0 <= index < len(current):
                return (current[index],)
        elif index < len(current):
            return (current[index],)
    return ()


def _slice(start: int | None, end: int | None, step: int | None) -> Step:
    """jsonpath2's slice, arithmetic and all: a negative start beyond the length counts from 0."""

    def select(_root: Any, current: Any) -> Iterable[Any]:
        if not isinstance(current, list):
            return ()
        length = len(current)
        first = 0 if start is None else start
        if first < 0:
            first += length if -first < length else -first
        last = length if end is None else (end + length if end < 0 else end)
        indices = range(first, last) if step is None else range(first, last, step)
        return (value for index in indices for value in _at(current, index))

    return select


def _test(expression: Any) -> Test:
    kind = type(expression)
    if kind in _BINARY:
        return _comparison(expression)
    if kind is NotUnaryOperatorExpression:
        inner = _test(expression.expression)
        return lambda root, current: not inner(root, current)
    if kind is AndVariadicOperatorExpression:
        parts = [_test(part) for part in expression.expressions]
        if len(parts) == 2:
            first, second = parts
            return lambda root, current: first(root, current) and second(root, current)
        return lambda root, current: all(part(root, current) for part in parts)
    if kind is OrVariadicOperatorExpression:
        parts = [_test(part) for part in expression.expressions]
        if len(parts) == 2:
            first, second = parts
            return lambda root, current: first(root, current) or second(root, current)
        return lambda root, current: any(part(root, current) for part in parts)
    if kind is SomeExpression:
        operand = expression.next_node_or_value
        if isinstance(operand, Node):
            return _found(operand)
        constant = bool(operand)
        return lambda _root, _current: constant
    raise _NotCompiled(kind.__name__)


def _comparison(expression: Any) -> Test:
    """Any left value against any right value, by jsonpath2's own callback.

    As in jsonpath2, a path on the right is read once: the values the first
    left value used up are not offered to the next.  A field of the current
    value compared with a literal, the usual filter, is looked up directly.
    """
    compare = expression.callback
    left, right = expression.left_node_or_value, expression.right_node_or_value
    left_key, right_key = _field(left), _field(right)
    if left_key is not None and not isinstance(right, Node):
        key = left_key
        return lambda _root, item: isinstance(item, dict) and key in item and compare(item[key], right)
    if right_key is not None and not isinstance(left, Node):
        key = right_key
        return lambda _root, item: isinstance(item, dict) and key in item and compare(left, item[key])
    left_values, right_values = _operand(left), _operand(right)

    def test(root: Any, current: Any) -> bool:
        lefts, rights = left_values(root, current), right_values(root, current)
        return any(compare(one, other) for one in lefts for other in rights)

    return test


def _field(operand: Any) -> str | None:
    """The key, if ``operand`` is ``@.key`` (a field of the current value)."""
    if type(operand) is not CurrentNode or type(operand.next_node) is not SubscriptNode:
        return None
    step = operand.next_node
    if type(step.next_node) is not TerminalNode or len(step.subscripts) != 1:
        return None
    subscript = step.subscripts[0]
    return subscript.index if type(subscript) is ObjectIndexSubscript else None


def _operand(operand: Any) -> Callable[[Any, Any], Iterable[Any]]:
    if isinstance(operand, Node):
        return _values(operand)
    constant = [operand]
    return lambda _root, _current: constant
