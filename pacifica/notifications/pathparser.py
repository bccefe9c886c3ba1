"""A fast parser for jsonpath2 expressions, building the tree jsonpath2's own parser builds.

jsonpath2 parses with ANTLR in pure Python: about a millisecond per
expression, which makes loading a hundred thousand subscriptions take
minutes.  This recursive-descent parser reads the same grammar (jsonpath2
0.4.5's ``JSONPath.g4``) in tens of microseconds and returns the same objects
(``RootNode``, ``SubscriptNode``, ``FilterSubscript``, the operator
expressions...), with the same quirks: string literals are kept as written
between their quotes (escapes are not decoded), ``and`` binds looser than
``or``, nested ``and``/``or`` groups are flattened and ``not not x`` is ``x``.

Whatever it does not take on raises :class:`Unsupported`, and the caller asks
jsonpath2: callable subscripts (``length()`` and the like) and every text
that is not valid, so that jsonpath2 alone says what is wrong with it.  The
differential test holds the two parsers to the same trees.
"""

from __future__ import annotations

import re
from typing import Any

from jsonpath2.expression import Expression
from jsonpath2.expressions.operator import (
    AndVariadicOperatorExpression,
    EqualBinaryOperatorExpression,
    GreaterThanBinaryOperatorExpression,
    GreaterThanOrEqualToBinaryOperatorExpression,
    LessThanBinaryOperatorExpression,
    LessThanOrEqualToBinaryOperatorExpression,
    NotEqualBinaryOperatorExpression,
    NotUnaryOperatorExpression,
    OrVariadicOperatorExpression,
    VariadicOperatorExpression,
)
from jsonpath2.expressions.some import SomeExpression
from jsonpath2.node import Node
from jsonpath2.nodes.current import CurrentNode
from jsonpath2.nodes.recursivedescent import RecursiveDescentNode
from jsonpath2.nodes.root import RootNode
from jsonpath2.nodes.subscript import SubscriptNode
from jsonpath2.nodes.terminal import TerminalNode
from jsonpath2.path import Path
from jsonpath2.subscript import Subscript
from jsonpath2.subscripts.arrayindex import ArrayIndexSubscript
from jsonpath2.subscripts.arrayslice import ArraySliceSubscript
from jsonpath2.subscripts.filter import FilterSubscript
from jsonpath2.subscripts.node import NodeSubscript
from jsonpath2.subscripts.objectindex import ObjectIndexSubscript
from jsonpath2.subscripts.wildcard import WildcardSubscript


class Unsupported(ValueError):
    """This parser leaves the text to jsonpath2 (it is not valid, or uses what this parser does not build)."""


#: The grammar's tokens, longest first where one is a prefix of another (as ANTLR's lexer picks).
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\n\r]+)
  | (?P<string>"(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})|[^"\\\x00-\x1f])*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?(?:0|[1-9][0-9]*))?)
  | (?P<word>[_A-Za-z][_A-Za-z0-9]*)
  | (?P<punct>\.\.|>=|<=|!=|[@$.*=<>{}\[\]:,()?])
    """,
    re.VERBOSE,
)

#: Words the lexer reads as keywords, never as names.
_KEYWORDS = frozenset({'and', 'or', 'not', 'true', 'false', 'null'})

#: jsonpath2's comparison expressions, by their operator.
COMPARISONS = {
    '=': EqualBinaryOperatorExpression,
    '!=': NotEqualBinaryOperatorExpression,
    '<': LessThanBinaryOperatorExpression,
    '<=': LessThanOrEqualToBinaryOperatorExpression,
    '>': GreaterThanBinaryOperatorExpression,
    '>=': GreaterThanOrEqualToBinaryOperatorExpression,
}

_LITERALS = {'true': True, 'false': False, 'null': None}

#: The end of the text.
_END = ('end', '')


def _tokens(text: str) -> list[tuple[str, str]]:
    """The text's tokens as (kind, text): kind is the punctuation or keyword itself, or 'string', 'number', 'id'."""
    found = []
    position, length = 0, len(text)
    while position < length:
        match = _TOKEN.match(text, position)
        if match is None:
            raise Unsupported(f'no token at {position}')
        position = match.end()
        kind, value = str(match.lastgroup), match.group()
        if kind == 'ws':
            continue
        if kind == 'word':
            kind = value if value in _KEYWORDS else 'id'
        elif kind == 'punct':
            kind = value
        found.append((kind, value))
    found.append(_END)
    return found


def parse(text: str) -> Path:
    """Parse ``text`` (as ``Path.parse_str`` takes it) into jsonpath2's own tree, or raise :class:`Unsupported`."""
    try:
        return Path(_Parser(_tokens(text)).jsonpath())
    except RecursionError:
        raise Unsupported('nested too deeply for this parser') from None


class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.at = 0

    def peek(self, ahead: int = 0) -> str:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)][0]

    def take(self, kind: str) -> str:
        token_kind, value = self.tokens[self.at]
        if token_kind != kind:
            raise Unsupported(f'expected {kind!r} at token {self.at}, found {token_kind!r}')
        self.at += 1
        return value

    def jsonpath(self) -> RootNode:
        """``$`` subscript? EOF."""
        self.take('$')
        root = RootNode(self.subscript_or_terminal())
        self.take('end')
        return root

    def path_node(self) -> Node:
        """``$`` or ``@``, then subscript? (the grammar's jsonpath_)."""
        if self.peek() == '$':
            self.at += 1
            return RootNode(self.subscript_or_terminal())
        self.take('@')
        return CurrentNode(self.subscript_or_terminal())

    def subscript_or_terminal(self) -> Node:
        if self.peek() in ('..', '.', '['):
            return self.subscript()
        return TerminalNode()

    def subscript(self) -> Node:
        kind = self.peek()
        if kind == '..':
            self.at += 1
            subscripts = self.subscriptables() if self.peek() == '[' else [self.bareword()]
            return RecursiveDescentNode(SubscriptNode(self.subscript_or_terminal(), subscripts))
        if kind == '.':
            self.at += 1
            subscripts = [self.bareword()]
        else:
            subscripts = self.subscriptables()
        return SubscriptNode(self.subscript_or_terminal(), subscripts)

    def bareword(self) -> Subscript:
        """A name or ``*`` after ``.`` or ``..``."""
        if self.peek() == '*':
            self.at += 1
            return WildcardSubscript()
        name = self.take('id')
        if self.peek() == '(':
            raise Unsupported(f'callable subscript {name!r}')
        return ObjectIndexSubscript(name)

    def subscriptables(self) -> list[Subscript]:
        """``[`` subscriptable (``,`` subscriptable)* ``]``."""
        self.take('[')
        found = [self.subscriptable()]
        while self.peek() == ',':
            self.at += 1
            found.append(self.subscriptable())
        self.take(']')
        return found

    def subscriptable(self) -> Subscript:
        kind = self.peek()
        if kind == 'string':
            return ObjectIndexSubscript(self.take('string')[1:-1])
        if kind == 'number':
            start = _index(self.take('number'))
            if self.peek() == ':':
                return self.sliceable(start)
            return ArrayIndexSubscript(start)
        if kind == ':':
            return self.sliceable(None)
        if kind == '*':
            self.at += 1
            return WildcardSubscript()
        if kind == '?':
            self.at += 1
            self.take('(')
            expression = self.expression()
            self.take(')')
            return FilterSubscript(expression)
        if kind in ('$', '@'):
            return NodeSubscript(self.path_node())
        if kind == 'id' and self.peek(1) == '(':
            raise Unsupported('callable subscript')
        raise Unsupported(f'unexpected {kind!r} in brackets')

    def sliceable(self, start: int | None) -> ArraySliceSubscript:
        """``:`` number? (``:`` number?)?: the end and step of a slice."""
        self.take(':')
        end = _index(self.take('number')) if self.peek() == 'number' else None
        step = None
        if self.peek() == ':':
            self.at += 1
            step = _index(self.take('number')) if self.peek() == 'number' else None
        return ArraySliceSubscript(start, end, step)

    def expression(self) -> Expression:
        """orExpression (``and`` andExpression)?: ``and`` binds looser than ``or``."""
        return self._variadic(self.or_expression, 'and', AndVariadicOperatorExpression, self.expression)

    def or_expression(self) -> Expression:
        return self._variadic(self.not_expression, 'or', OrVariadicOperatorExpression, self.or_expression)

    def _variadic(self, operand: Any, keyword: str, kind: type[VariadicOperatorExpression], rest: Any) -> Expression:
        """One operand, then ``keyword`` and the rest; operands of the same kind are flattened, as jsonpath2 does."""
        parts = [operand()]
        if self.peek() == keyword:
            self.at += 1
            parts.append(rest())
        flat: list[Expression] = []
        for part in parts:
            flat.extend(part.expressions if isinstance(part, kind) else [part])
        return flat[0] if len(flat) == 1 else kind(flat)

    def not_expression(self) -> Expression:
        kind = self.peek()
        if kind == 'not':
            self.at += 1
            inner = self.not_expression()
            if isinstance(inner, NotUnaryOperatorExpression):
                return inner.expression
            return NotUnaryOperatorExpression(inner)
        if kind == '(':
            self.at += 1
            expression = self.expression()
            self.take(')')
            return expression
        left = self.operand()
        comparison = COMPARISONS.get(self.peek())
        if comparison is None:
            return SomeExpression(left)
        self.at += 1
        return comparison(left, self.operand())

    def operand(self) -> Any:
        """A path from ``$`` or ``@``, or a JSON value (the grammar's jsonpath__)."""
        if self.peek() in ('$', '@'):
            return self.path_node()
        return self.value()

    def value(self) -> Any:
        kind = self.peek()
        if kind == 'string':
            return self.take('string')[1:-1]
        if kind == 'number':
            text = self.take('number')
            return float(text) if ('.' in text or 'e' in text or 'E' in text) else int(text)
        if kind in _LITERALS:
            self.at += 1
            return _LITERALS[kind]
        if kind == '{':
            return self.obj()
        if kind == '[':
            return self.array()
        raise Unsupported(f'unexpected {kind!r} where a value belongs')

    def obj(self) -> dict:
        self.take('{')
        found: dict = {}
        if self.peek() == '}':
            self.at += 1
            return found
        while True:
            key = self.take('string')[1:-1]
            self.take(':')
            found[key] = self.value()
            if self.peek() != ',':
                break
            self.at += 1
        self.take('}')
        return found

    def array(self) -> list:
        self.take('[')
        found: list = []
        if self.peek() == ']':
            self.at += 1
            return found
        found.append(self.value())
        while self.peek() == ',':
            self.at += 1
            found.append(self.value())
        self.take(']')
        return found


def _index(text: str) -> int:
    """An index or slice bound: the grammar takes only numbers that are integers."""
    try:
        return int(text)
    except ValueError:
        raise Unsupported(f'{text} is not an integer') from None
