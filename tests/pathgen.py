"""Seeded jsonpath2 texts and JSON documents for the differential matcher test.

The texts cover jsonpath2 0.4.5's grammar, plus near misses and broken texts whose
validity jsonpath2 itself decides, so the generator never has to be right about the
grammar.  The documents reuse the texts' names and literals (and their look-alikes:
``1``, ``1.0``, ``True``, ``"1"``; raw ``\\u0041`` and ``A``) so filters find something
often enough for the comparison to mean something.
"""

from __future__ import annotations

import copy
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

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
from jsonpath2.subscripts.arrayindex import ArrayIndexSubscript
from jsonpath2.subscripts.arrayslice import ArraySliceSubscript
from jsonpath2.subscripts.callable import CallableSubscript, CharAtCallableSubscript, SubstringCallableSubscript
from jsonpath2.subscripts.filter import FilterSubscript
from jsonpath2.subscripts.objectindex import ObjectIndexSubscript
from jsonpath2.subscripts.wildcard import WildcardSubscript

#: Bareword-safe names: the fixtures' keys, short ones, and names that merely start with a keyword.
NAMES = (
    'data',
    'eventID',
    'eventType',
    'source',
    'destinationTable',
    'value',
    'key',
    'mimetype',
    '_id',
    'size',
    'name',
    'subdir',
    'extensions',
    'comExampleExtension',
    'a',
    'b',
    'c',
    'x_1',
    'length',
    'keys',
    'andy',
    'nota',
    'true1',
    'nullable',
    'Or',
)
#: jsonpath2 lexes these as keywords, so ``.and`` is rejected while ``["and"]`` is a name.
KEYWORDS = ('and', 'or', 'not', 'true', 'false', 'null')
#: Text between the quotes of a bracketed name, exactly as written (jsonpath2 keeps it raw).
RAW_KEYS = (
    'a b',
    'a.b',
    'Transactions.project',
    'say \\"hi\\"',
    'back\\\\slash',
    '\\u0041',
    'A',
    '\\n',
    '\\/',
    'caf\u00e9',
    '\u65e5\u672c',
    '',
    '$',
    '@',
    '*',
    '[0]',
    "it's",
    'and',
    'true',
    '0',
    '-1',
    '1.0',
    'smile \U0001f642',
)
TABLES = (
    'Files',
    'Transactions.project',
    'Transactions.instrument',
    'Transactions.submitter',
    'Transactions._id',
    'TransactionKeyValue',
    'FileKeyValue',
)
#: Raw contents of string literals.
STRINGS = (
    *TABLES,
    'text/plain',
    'org.pacifica.metadata.ingest',
    '/pacifica/metadata/ingest',
    '1234a',
    '54',
    '1',
    '1.0',
    'true',
    'null',
    '',
    ' ',
    'Blah',
    'Nam\\u00e9',
    'Tag',
    'foo.txt',
    'a/b/',
    'C234-1234-1234',
    'caf\u00e9',
    '\\"',
    'a\\\\b',
)
#: NUMBER tokens as written; jsonpath2 makes a float of any with ``.``, ``e`` or ``E``.
NUMBERS = (
    '0',
    '1',
    '-1',
    '2',
    '10',
    '34',
    '54',
    '128',
    '1234',
    '1001',
    '-0',
    '0.0',
    '-0.0',
    '1.0',
    '1.5',
    '54.0',
    '0.25',
    '1e3',
    '1E3',
    '2.5E-1',
    '1e+2',
    '1e-2',
    '-2.5e1',
    '1e999',
    '12345678901234567890',
)
#: Numbers jsonpath2's lexer or int-only subscripts refuse.
BAD_NUMBERS = ('01', '00', '-01', '1.', '.5', '+1', '1e', '0x1', 'NaN', 'Infinity', '1_0')
CALLABLES = ('length', 'keys', 'values', 'entries', 'charAt', 'substring')
OPERATORS = ('=', '!=', '<', '<=', '>', '>=')
WHITESPACE = (' ', '  ', '\t', '\n', '\r\n', ' \t ')
STRAY = (']', '[', '(', ')', ',', '.', '..', '?', '@', '$', '=', '==', '!', '-', '#', "'a'", '~', '"open', '{', '}')
STRAY += (':', '*', 'and', 'contains', '&&', '01', '1.', '\\', '?(', '$.', '\x0b', '\x0c', '\u00a0', '\ufeff', '\u0663')

#: Verbatim: the seed consumer's expression, the shapes subscriptions use, and edge cases.
CONSUMER = (
    '$[?(@["eventID"] and (@["eventType"] = "org.pacifica.metadata.ingest") and '
    '(@["source"] = "/pacifica/metadata/ingest"))]["data"][*][?((@["destinationTable"] = "Files") and '
    '(@["mimetype"] = "text/plain"))]["_id"]'
)
FIXED = (
    CONSUMER,
    '$.data[*][?(@.destinationTable = "Transactions.project" and @.value = "1234a")]',
    '$.data[*][?(@.destinationTable = "Transactions.instrument" and @.value = 54)]',
    '$[?(@.eventType = "org.pacifica.metadata.ingest")]',
    '$.data',
    '$',
    '  $.data  ',
    '$ . data [ * ] [ ? ( @ . value = 54 ) ]',
    '$.data[*][?(@.mimetype = "text/plain")]._id',
    '$.data[*][?(not (@.destinationTable = "Files"))]',
    '$.data[*][?(@.name = @.subdir)]',
    '$.data[0,1]',
    '$.data.length()',
    '$.data[?(@.length() > 2)]',
    '$.eventID.charAt(0)',
    '$.eventID.substring(1, 3)',
    '$.data[*].keys()',
    '$.extensions.values()',
    '$.data.entries()',
    '$.data[length()]',
    '$.data.nosuch()',
    '$["\\u0041"]',
    '$["say \\"hi\\""]',
    '$["back\\\\slash"]',
    '$[-0]',
    '$[01]',
    '$[0:01]',
    '$[1.5]',
    '$[1e2]',
    '$[- 1]',
    '$[::]',
    '$[::0]',
    '$[::-1]',
    '$[:-5:-1]',
    '$[-2:]',
    '$[1:3:1]',
    '$.and',
    '$.true',
    '$.not',
    '$["and"]',
    '$..',
    '$...a',
    '$..*',
    '$..[0]',
    '$..["a","b"]',
    '$[$.key]',
    '$.data[@.key]',
    '$[?(@.a == 1)]',
    '$[?(@.a contains "x")]',
    '$[?(@.a = 01)]',
    '$[?(@.a = )]',
    '$[?(not not @.a)]',
    '$[?(not (not @.a = 1))]',
    '$[?(@.a or @.b and @.c)]',
    '$[?((@.a and @.b) and (@.c and @.a))]',
    '$[?((@.a or @.b) or (@.c or @.a))]',
    '$[?(@.a[*] = @.b[*])]',
    '$[?(@.a = [1, {"b": [2, 3]}])]',
    '$[?(@.a = {"k": 1, "k": 2})]',
    '$[?(@)]',
    '$[?($)]',
    '$[?(1)]',
    '$[?("")]',
    '$[?(null)]',
    '$[?([])]',
    '$[?({})]',
    '$[?(1 = 1.0)]',
    "$['a']",
    '$[1,]',
    '$.a.',
    '',
    'data',
    '@.a',
    '$$',
)


def tokenize(text: str) -> list[str]:
    """Split a text roughly as jsonpath2's lexer would; close enough to re-space and to break."""
    pattern = r'\.\.|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[A-Za-z_]\w*|!=|<=|>=|\S'
    return re.findall(pattern, text)


def number(text: str) -> int | float:
    """The value jsonpath2 gives a NUMBER token."""
    return float(text) if any(mark in text for mark in '.eE') else int(text)


def decoded(raw: str) -> str:
    """What a JSON reader would make of the raw text (jsonpath2 itself does not decode)."""
    return json.loads(f'"{raw}"')


@dataclass
class Generated:
    """One text, with the names and literals it uses, for documents that can match it."""

    text: str
    names: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    docs: list[Any] = field(default_factory=list)  # made along with the text: the deep ones, too deep for witness()


class PathGen:
    """Expression texts; every choice comes from one seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.current = Generated('')

    def texts(self, count: int) -> list[Generated]:
        """The fixed texts, then generated ones (an eighth of them broken) up to ``count``."""
        out = [self._known(text) for text in FIXED]
        while len(out) < count:
            out.append(self.one())
        return out

    def one(self) -> Generated:
        self.current = Generated('')
        if self.rng.random() < 0.15:
            tokens = tokenize(self._realistic())
        else:
            tokens = ['$', *self._steps(0, self.rng.choice((1, 1, 2, 2, 3, 4, 5)))]
        self.current.text = self._break(tokens) if self.rng.random() < 0.12 else self._join(tokens)
        return self.current

    @staticmethod
    def deep() -> list[Generated]:
        """Deeply nested texts (steps, parentheses, negations, operands, arrays, filters), with a deep document.

        Past some depth jsonpath2 gives up (``RecursionError``); the fast parser must then
        raise ``Unsupported`` rather than fail in some other way.
        """
        out = []
        for depth in (100, 200, 400, 800):
            doc: Any = 1
            for _ in range(depth):
                doc = {'a': doc, 'b': 1}
            shapes = (
                '$' + '.a' * depth,
                '$' + '..a' * depth,
                '$' + '["a"]' * depth,
                '$[?(' + '(' * depth + '@.a' + ')' * depth + ')]',
                '$[?(' + 'not ' * depth + '@.a)]',
                '$[?(' + ' and '.join(['@.a'] * depth) + ')]',
                '$[?(' + ' or '.join(['@.b'] * depth) + ')]',
                '$[?(@.a = ' + '[' * depth + ']' * depth + ')]',
                '$' + '[?(@.a' * depth + ')]' * depth,
            )
            out += [Generated(text, names=['a'], values=[1], docs=[doc]) for text in shapes]
        return out

    def _known(self, text: str) -> Generated:
        """A fixed text, with its words and quoted strings as the names and values documents reuse."""
        strings = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
        return Generated(text, names=[*re.findall(r'[A-Za-z_]\w*', text), *strings], values=strings)

    def _join(self, tokens: list[str]) -> str:
        """Join with one of three spacing styles; a space only where tokens would otherwise merge."""
        rng = self.rng
        style = rng.choices(('compact', 'spaced', 'random'), (5, 3, 2))[0]
        spaced = {*OPERATORS, 'and', 'or', 'not'}
        parts: list[str] = []
        prev = ''
        for token in tokens:
            gap = ''
            if style == 'spaced' and (token in spaced or prev in spaced or prev == ','):
                gap = ' '
            elif style == 'random' and rng.random() < 0.3:
                gap = rng.choice(WHITESPACE)
            if not gap and prev and _wordy(prev[-1]) and _wordy(token[0]) and (style != 'random' or rng.random() < 0.9):
                gap = ' '
            parts += [gap, token]
            prev = token
        text = ''.join(parts)
        if style == 'random' and rng.random() < 0.3:
            text = rng.choice(WHITESPACE) + text + rng.choice(WHITESPACE)
        return text

    def _break(self, tokens: list[str]) -> str:
        """A near miss: truncated, a token dropped, doubled or swapped, a stray token or character."""
        rng = self.rng
        tokens = list(tokens)
        how = rng.choice(('truncate', 'drop', 'stray', 'stray', 'double', 'swap', 'cut'))
        at = rng.randrange(len(tokens))
        if how == 'truncate':
            tokens = tokens[: max(1, at)]
        elif how == 'drop' and len(tokens) > 1:
            del tokens[at]
        elif how == 'double':
            tokens.insert(at, tokens[at])
        elif how == 'swap' and len(tokens) > 1:
            other = rng.randrange(len(tokens))
            tokens[at], tokens[other] = tokens[other], tokens[at]
        else:
            tokens.insert(at + 1, rng.choice(STRAY))
        text = self._join(tokens)
        if how == 'cut':
            text = text[: rng.randrange(1, len(text) + 1)]
        return text

    def _realistic(self) -> str:
        """The subscriptions people write: a table and a value, an event type, a file's id."""
        rng = self.rng
        table, value = rng.choice(TABLES), rng.choice((*STRINGS, *NUMBERS[:12]))
        literal = value if value in NUMBERS else f'"{value}"'
        self.current.names += ['data', 'destinationTable', 'value', 'eventType', 'mimetype', '_id', 'key']
        self.current.values += [table, value if value not in NUMBERS else number(value)]
        shape = rng.randrange(9)
        if shape == 0:
            return f'$.data[*][?(@.destinationTable = "{table}" and @.value = {literal})]'
        if shape == 1:
            return (
                f'$["data"][*][?(@["destinationTable"] = "{table}" and @["value"] {rng.choice(OPERATORS)} {literal})]'
            )
        if shape == 2:
            return f'$[?(@.eventType = "{rng.choice(STRINGS)}")]'
        if shape == 3:
            return CONSUMER.replace('Files', table).replace('text/plain', rng.choice(STRINGS))
        if shape == 4:
            return f'$.data[*][?(@.destinationTable = "Files" and @.mimetype = "{rng.choice(STRINGS)}")]._id'
        if shape == 5:
            return f'$.data[*][?(@.key = "Tag" and @.value = {literal})]'
        if shape == 6:
            return f'$.{rng.choice(NAMES)}'
        if shape == 7:
            return f'$.data[*][?(@.size {rng.choice(OPERATORS)} {rng.choice(NUMBERS)})]'
        many = ('[*]', '.*', '..*', '[0:3]', '[-2:]', '..value')
        left, right = rng.sample(NAMES, 2)
        operator = rng.choice(('=', '=', '!=', '<', '>='))
        return f'$[?(@.{left}{rng.choice(many)} {operator} @.{right}{rng.choice(many)})]'

    def _steps(self, depth: int, count: int, root: str = '$') -> list[str]:
        tokens: list[str] = []
        for _ in range(count):
            tokens += self._step(depth, root)
        return tokens

    def _step(self, depth: int, root: str) -> list[str]:
        rng = self.rng
        weights = {'name': 30, 'quoted': 12, 'wild': 7, 'index': 7, 'slice': 6, 'union': 5, 'descent': 6}
        weights |= {'filter': 14 if root == '$' else 4, 'callable': 3, 'node': 1.5}
        if depth >= 3:
            weights |= {'filter': 0, 'node': 0, 'union': 0}
        kind = rng.choices(list(weights), list(weights.values()))[0]
        if kind == 'name':
            return ['.', self._bareword()]
        if kind == 'quoted':
            return ['[', self._quoted(), ']']
        if kind == 'wild':
            return rng.choice((['.', '*'], ['[', '*', ']']))
        if kind == 'index':
            return ['[', self._index(), ']']
        if kind == 'slice':
            return ['[', *self._slice(), ']']
        if kind == 'union':
            return ['[', *self._subscriptables(depth, rng.choice((2, 2, 3))), ']']
        if kind == 'descent':
            what = rng.randrange(6)
            if what < 2:
                return ['..', self._bareword()]
            if what == 2:
                return ['..', '*']
            if what == 3:
                return ['..', *self._callable()]
            return ['..', '[', *self._subscriptables(depth, rng.choice((1, 1, 2))), ']']
        if kind == 'filter':
            return ['[', *self._filter(depth), ']']
        if kind == 'callable':
            return ['.', *self._callable()] if rng.random() < 0.6 else ['[', *self._callable(), ']']
        return ['[', *self._operand_path(depth + 1), ']']

    def _subscriptables(self, depth: int, count: int) -> list[str]:
        rng = self.rng
        tokens: list[str] = []
        for position in range(count):
            if position:
                tokens.append(',')
            kind = rng.choices(
                ('quoted', 'index', 'slice', 'wild', 'filter', 'node', 'callable'), (8, 6, 3, 1, 2, 1, 1)
            )
            kind = kind[0] if depth < 3 or kind[0] not in ('filter', 'node') else 'index'
            if kind == 'quoted':
                tokens.append(self._quoted())
            elif kind == 'index':
                tokens.append(self._index())
            elif kind == 'slice':
                tokens += self._slice()
            elif kind == 'wild':
                tokens.append('*')
            elif kind == 'filter':
                tokens += self._filter(depth)
            elif kind == 'node':
                tokens += self._operand_path(depth + 1)
            else:
                tokens += self._callable()
        return tokens

    def _bareword(self) -> str:
        name = self.rng.choice(KEYWORDS) if self.rng.random() < 0.02 else self.rng.choice(NAMES)
        self.current.names.append(name)
        return name

    def _quoted(self) -> str:
        raw = self.rng.choice(NAMES) if self.rng.random() < 0.4 else self.rng.choice(RAW_KEYS)
        self.current.names.append(raw)
        return f'"{raw}"'

    def _index(self) -> str:
        roll = self.rng.random()
        if roll < 0.03:
            return self.rng.choice((*BAD_NUMBERS[:4], '1.0', '1e1'))
        if roll < 0.06:
            return self.rng.choice(('-0', '10', '-10', '100'))
        return str(self.rng.randint(-3, 3))

    def _slice(self) -> list[str]:
        rng = self.rng

        def bound() -> list[str]:
            return [] if rng.random() < 0.4 else [str(rng.randint(-4, 4))]

        tokens = [*bound(), ':', *bound()]
        if rng.random() < 0.5:
            tokens.append(':')
            roll = rng.random()
            if roll < 0.08:
                tokens.append('0')
            elif roll < 0.11:
                tokens.append(rng.choice(('01', '1.5')))
            elif roll < 0.8:
                tokens.append(str(rng.choice((1, 2, 3, -1, -2))))
        return tokens

    def _callable(self) -> list[str]:
        rng = self.rng
        name = rng.choice(CALLABLES) if rng.random() < 0.93 else rng.choice(('foo', 'size', 'count'))
        args: list[list[str]] = []
        if name == 'charAt':
            args = [self._call_argument()]
        elif name == 'substring':
            args = [self._call_argument() for _ in range(rng.choice((1, 2, 2)))]
        elif rng.random() < 0.1:
            args = [self._call_argument()]
        tokens = [name, '(']
        for index, arg in enumerate(args):
            tokens += [','] * bool(index) + arg
        return [*tokens, ')']

    def _call_argument(self) -> list[str]:
        roll = self.rng.random()
        if roll < 0.7:
            return [str(self.rng.randint(-3, 4))]
        if roll < 0.85:
            return ['@', *self._steps(3, 1, '@')]
        return self._literal(3)

    def _filter(self, depth: int) -> list[str]:
        return ['?', '(', *self._expression(depth + 1), ')']

    def _expression(self, depth: int) -> list[str]:
        rng = self.rng
        kinds = {'compare': 45, 'exists': 20, 'and': 12, 'or': 8, 'not': 6, 'paren': 6, 'literal': 3}
        if depth >= 3:
            kinds |= {'and': 0, 'or': 0, 'not': 1, 'paren': 1}
        kind = rng.choices(list(kinds), list(kinds.values()))[0]
        if kind == 'compare':
            left = self._operand(depth)
            is_path = left[0] in ('@', '$')
            right = self._operand(depth) if is_path or rng.random() < 0.1 else self._operand_path(depth)
            if rng.random() < 0.2:
                left, right = right, left
            return [*left, rng.choice(OPERATORS), *right]
        if kind == 'exists':
            return self._operand_path(depth)
        if kind in ('and', 'or'):
            tokens = self._expression(depth + 1)
            for _ in range(rng.choice((1, 1, 2))):
                tokens += [kind, *self._expression(depth + 1)]
            return tokens
        if kind == 'not':
            return ['not', *self._expression(depth + 1)]
        if kind == 'paren':
            return ['(', *self._expression(depth + 1), ')']
        return self._literal(depth)

    def _operand(self, depth: int) -> list[str]:
        return self._operand_path(depth) if self.rng.random() < 0.55 else self._literal(depth)

    def _operand_path(self, depth: int) -> list[str]:
        root = '$' if self.rng.random() < 0.12 else '@'
        count = self.rng.choice((0, 1, 1, 1, 2, 2, 3)) if root == '@' else self.rng.choice((1, 2, 3))
        return [root, *self._steps(depth + 1, count, root)]

    def _literal(self, depth: int) -> list[str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            raw = rng.choice(STRINGS)
            self.current.values.append(raw)
            return [f'"{raw}"']
        if roll < 0.75:
            if rng.random() < 0.03:
                return [rng.choice(BAD_NUMBERS)]
            text = rng.choice(NUMBERS)
            self.current.values.append(number(text))
            return [text]
        if roll < 0.87:
            word = rng.choice(('true', 'false', 'null'))
            self.current.values.append({'true': True, 'false': False, 'null': None}[word])
            return [word]
        if depth >= 4:
            return ['[', ']'] if roll < 0.93 else ['{', '}']
        items = [self._literal(depth + 1) for _ in range(rng.choice((0, 1, 2, 3)))]
        if roll < 0.93:
            tokens = ['[']
            for index, item in enumerate(items):
                tokens += [','] * bool(index) + item
            return [*tokens, ']']
        tokens = ['{']
        for index, item in enumerate(items):
            tokens += [','] * bool(index) + [f'"{rng.choice(NAMES + RAW_KEYS)}"', ':', *item]
        return [*tokens, '}']


def _wordy(char: str) -> bool:
    return char.isalnum() or char == '_'


#: Document values, with look-alikes: equal in Python (1, 1.0, True) or equal as text ("1").
SCALARS = (
    *(0, 0.0, -0.0, False, 1, 1.0, True, 2, -1, -1.0, 10, 34, 47, 54, 54.0, 128, 1001, 1234),
    *(1000, 1000.0, 100.0, 0.25, 0.01, -25.0, 1.5, 12345678901234567890, None),
    *dict.fromkeys((*STRINGS, *map(decoded, STRINGS))),
)
DOC_KEYS = tuple(dict.fromkeys((*NAMES, *KEYWORDS, *RAW_KEYS, *map(decoded, RAW_KEYS), '1', '-1')))


class DocGen:
    """JSON documents (as ``json.loads`` returns them), biased toward a text's names and literals."""

    def __init__(self, seed: Any) -> None:
        self.rng = random.Random(seed)
        self.keys: tuple[str, ...] = DOC_KEYS
        self.scalars: tuple[Any, ...] = SCALARS

    def document(self, names: list[str] | None = None, values: list[Any] | None = None) -> Any:
        """A dict mostly, sometimes a list or a bare value; ``names`` and ``values`` come up often."""
        self.keys = tuple(names or ()) + tuple(decoded(name) for name in names or () if _decodable(name))
        self.scalars = tuple(twin for value in values or () for twin in _twins(value))
        roll = self.rng.random()
        if roll < 0.75:
            return self._mapping(0)
        if roll < 0.93:
            return self._sequence(0)
        return self._scalar()

    def witness(self, path: Path, names: list[str], values: list[Any]) -> Any:
        """A document built along the path so that it likely finds something, then often nudged a little.

        The nudge (a value swapped for a look-alike, a key dropped) makes the near misses
        where ``1``, ``1.0``, ``True`` and ``"1"`` or a missing key decide the answer.
        """
        self.document(names, values)  # for the pools only
        doc = self._build(path.root_node, _ANY)
        if self.rng.random() < 0.5:
            doc = self._nudge(doc)
        return doc

    def _build(self, node: Node, leaf: Any) -> Any:
        """A value the node, applied to it, likely matches; ``leaf`` is what the last step should find."""
        rng = self.rng
        if isinstance(node, (RootNode, CurrentNode)):
            return self._build(node.next_node, leaf)
        if isinstance(node, RecursiveDescentNode):
            value = self._build(node.next_node, leaf)
            for _ in range(rng.choice((0, 0, 1, 2))):
                value = {self._key(): value} if rng.random() < 0.6 else [self._value(3), value]
            return value
        if isinstance(node, SubscriptNode):
            return self._place(rng.choice(node.subscripts), self._build(node.next_node, leaf))
        return self._value(2) if leaf is _ANY else copy.deepcopy(leaf)

    def _place(self, subscript: Any, inner: Any) -> Any:
        """A value in which the subscript finds ``inner``."""
        rng = self.rng
        if isinstance(subscript, ObjectIndexSubscript):
            return {**self._mapping(3), subscript.index: inner}
        if isinstance(subscript, ArrayIndexSubscript) and abs(subscript.index) < 12:
            index = subscript.index
            items = [self._value(3) for _ in range((index + 1 if index >= 0 else -index) + rng.randint(0, 2))]
            items[index] = inner
            return items
        if isinstance(subscript, WildcardSubscript):
            return [self._value(3), inner][rng.randint(0, 1) :] if rng.random() < 0.6 else {self._key(): inner}
        if isinstance(subscript, ArraySliceSubscript):
            return [inner if rng.random() < 0.6 else self._value(3) for _ in range(rng.randint(0, 7))]
        if isinstance(subscript, FilterSubscript):
            return self._satisfy(subscript.expression, inner)
        if isinstance(subscript, (CharAtCallableSubscript, SubstringCallableSubscript)):
            return rng.choice(STRINGS)
        if isinstance(subscript, CallableSubscript):
            return self._mapping(3) if rng.random() < 0.5 else rng.choice((self._sequence(3), rng.choice(STRINGS)))
        return inner

    def _satisfy(self, expression: Any, value: Any) -> Any:
        """The value, with what makes the filter expression hold merged in (where that is easy)."""
        rng = self.rng
        if isinstance(expression, AndVariadicOperatorExpression):
            for part in expression.expressions:
                value = self._satisfy(part, value)
        elif isinstance(expression, OrVariadicOperatorExpression):
            value = self._satisfy(rng.choice(expression.expressions), value)
        elif isinstance(expression, SomeExpression) and isinstance(expression.next_node_or_value, CurrentNode):
            value = _merge(value, self._build(expression.next_node_or_value, _ANY))
        elif isinstance(expression, BinaryOperatorExpression):
            sides = (expression.left_node_or_value, expression.right_node_or_value)
            nodes = [side for side in sides if isinstance(side, CurrentNode)]
            literals = [side for side in sides if not isinstance(side, Node)]
            leaf = literals[0] if literals else self._scalar()
            if literals and not isinstance(expression, EqualBinaryOperatorExpression):
                near = [leaf - 1, leaf + 1] if isinstance(leaf, (int, float)) and not isinstance(leaf, bool) else []
                leaf = rng.choice(_twins(leaf) + near + [self._scalar()])
            for node in nodes:  # two paths meet on one value (or its look-alike, after a nudge)
                value = _merge(value, self._build(node, leaf))
        return value

    def _nudge(self, doc: Any) -> Any:
        """Swap one value for a look-alike or another value, or drop one key."""
        rng = self.rng
        spots = list(_spots(doc))
        if not spots:
            return doc
        container, key = rng.choice(spots)
        if isinstance(container, dict) and rng.random() < 0.3:
            del container[key]
        else:
            twins = _twins(container[key]) if not isinstance(container[key], (dict, list)) else []
            container[key] = rng.choice([*twins[1:], self._scalar()])
        return doc

    def event(self, base: dict) -> dict:
        """A fixture event with a few of its values changed, moved or removed."""
        rng = self.rng
        self.keys, self.scalars = (), ()
        doc = copy.deepcopy(base)
        items = doc.get('data', [])
        for _ in range(rng.randint(1, 4)):
            how = rng.randrange(8)
            if how == 0 and doc:
                doc[rng.choice(list(doc))] = self._value(2)
            elif how == 1 and doc:
                del doc[rng.choice(list(doc))]
            elif how in (2, 3) and items:
                item = rng.choice(items)
                key = rng.choice(('destinationTable', 'value', 'mimetype', 'key', '_id', 'size'))
                item[key] = rng.choice((*TABLES, *SCALARS)) if how == 2 else self._scalar()
            elif how == 4 and items:
                item = rng.choice(items)
                item.pop(rng.choice(list(item) or ['value']), None)
            elif how == 5:
                items.append(self._mapping(2))
            elif how == 6 and items:
                rng.shuffle(items)
                del items[rng.randrange(len(items)) :]
            elif how == 7:
                doc['eventType'] = rng.choice(STRINGS)
        if rng.random() < 0.05:
            doc['data'] = {str(index): item for index, item in enumerate(items)}
        return doc

    def _value(self, depth: int) -> Any:
        if depth < 4 and self.rng.random() < 0.45 - 0.1 * depth:
            return self._mapping(depth + 1) if self.rng.random() < 0.6 else self._sequence(depth + 1)
        return self._scalar()

    def _mapping(self, depth: int) -> dict:
        size = self.rng.choice((0, 1, 2, 2, 3, 3, 4, 5))
        return {self._key(): self._value(depth) for _ in range(size)}

    def _sequence(self, depth: int) -> list:
        return [self._value(depth) for _ in range(self.rng.choice((0, 1, 1, 2, 3, 4, 5)))]

    def _key(self) -> str:
        return self.rng.choice(self.keys if self.keys and self.rng.random() < 0.6 else DOC_KEYS)

    def _scalar(self) -> Any:
        value = self.rng.choice(self.scalars if self.scalars and self.rng.random() < 0.5 else SCALARS)
        return copy.deepcopy(value)


_ANY = object()


def _merge(old: Any, new: Any) -> Any:
    """``new`` laid over ``old``: dicts key by key, lists item by item; otherwise ``new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{key: _merge(old[key], item) if key in old else item for key, item in new.items()}}
    if isinstance(old, list) and isinstance(new, list):
        return [_merge(a, b) for a, b in zip(old, new)] + old[len(new) :] + new[len(old) :]
    return new


def _spots(value: Any):
    """Every (container, key) pair inside a value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield value, key
            yield from _spots(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield value, index
            yield from _spots(item)


def _decodable(raw: str) -> bool:
    try:
        decoded(raw)
    except ValueError:
        return False
    return True


def _twins(value: Any) -> list[Any]:
    """The value and the values jsonpath2 may or may not take for it (``54``: ``54.0``, ``"54"``)."""
    if isinstance(value, bool) or value is None:
        return [value, int(value or 0), str(value).lower()]
    if isinstance(value, int):
        return [value, float(value), str(value), *([bool(value)] if value in (0, 1) else [])]
    if isinstance(value, float):
        return [value, *([int(value)] if value.is_integer() else []), repr(value)]
    if isinstance(value, str):
        return [value, decoded(value)] if _decodable(value) else [value]
    return [value]
