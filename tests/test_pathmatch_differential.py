"""The fast JSONPath matcher against jsonpath2 itself, on thousands of seeded texts and documents.

``pathparser.parse`` must build exactly the tree jsonpath2's parser builds, or leave the
text to jsonpath2 (always when jsonpath2 rejects it), and ``pathcompiler.compile_path``
must answer "does jsonpath2 find anything" as jsonpath2 does: the same truth value, and an
exception where jsonpath2 raises one (a slice step of 0).  jsonpath2 is the specification,
quirks included: the differential tests assert no answer of their own, and ``QUIRKS`` names
the surprising ones so that a failure there says which.  The texts and documents come from
``tests/pathgen.py``.

Every run uses the same seed; ``PATHMATCH_SEED=n`` tries another.  A failure names the
seed, the text and the document, ready to paste into a reproduction.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import time
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Union

import pytest
from jsonpath2.path import Path
from jsonpath2.subscripts.callable import CallableSubscript

from pacifica.notifications import pathcompiler, pathparser

from .conftest import FIXTURES
from .pathgen import CONSUMER, DocGen, Generated, PathGen

pytestmark = pytest.mark.fast

SEED = int(os.environ.get('PATHMATCH_SEED', '20240611'))
TEXTS = 4000
SHARED_DOCS = 7  # per text, from a pool of random documents and varied fixture events
OWN_DOCS = 4  # per text: built along its tree, or from its names and literals
SHOWN = 6  # disagreements spelled out in a failure message
EVENT_FILES = ('events.json', 'metadata-ingest-event.json')

#: Every class of jsonpath2's trees: the generator must reach each one.
TREE_CLASSES = (
    'RootNode',
    'CurrentNode',
    'SubscriptNode',
    'RecursiveDescentNode',
    'TerminalNode',
    'ObjectIndexSubscript',
    'ArrayIndexSubscript',
    'ArraySliceSubscript',
    'WildcardSubscript',
    'FilterSubscript',
    'NodeSubscript',
    'CharAtCallableSubscript',
    'EntriesCallableSubscript',
    'KeysCallableSubscript',
    'LengthCallableSubscript',
    'SubstringCallableSubscript',
    'ValuesCallableSubscript',
    'SomeExpression',
    'NotUnaryOperatorExpression',
    'AndVariadicOperatorExpression',
    'OrVariadicOperatorExpression',
    'EqualBinaryOperatorExpression',
    'NotEqualBinaryOperatorExpression',
    'LessThanBinaryOperatorExpression',
    'LessThanOrEqualToBinaryOperatorExpression',
    'GreaterThanBinaryOperatorExpression',
    'GreaterThanOrEqualToBinaryOperatorExpression',
    'float',
    'bool',
    'NoneType',
    'dict',
)

#: jsonpath2 answers an independent matcher would likely get "right" instead; they must be kept.
QUIRKS = (
    ('$[?(@.a[*] = @.b[*])]', {'a': [1, 2], 'b': [2]}, False),  # only the first left value meets the right ones
    ('$[?(@.b[*] = @.a[*])]', {'a': [1, 2], 'b': [2]}, True),
    ('$[?(@.a[*] != 1)]', {'a': []}, False),  # no values: no comparison holds, not even !=
    ('$[?(@.a = true)]', {'a': 1}, True),  # Python equality: 1 == 1.0 == True
    ('$[?(@.a = 1)]', {'a': 1.0}, True),
    ('$[?(@.a < 2)]', {'a': True}, True),
    ('$[?(@.a < "b")]', {'a': 'a'}, False),  # order compares numbers only
    ('$[?(@.a = [1])]', {'a': [True]}, True),
    ('$[?(@.n = 1e3)]', {'n': 1000}, True),
    ('$["\\u0041"]', {'A': 1}, False),  # bracketed names stay as written, escapes and all
    ('$["\\u0041"]', {'\\u0041': 1}, True),
    ('$[?(@.v = "Nam\\u00e9")]', {'v': 'Nam\\u00e9'}, True),
    ('$.data[?(@.mimetype)]', {'data': [{'mimetype': 'x'}]}, False),  # a filter tests the node it follows
    ('$[::-1]', [1, 2], False),  # a negative step without bounds selects nothing
    ('$[:-5:-1]', [1, 2, 3], True),
    ('$[-4:]', [1, 2, 3], True),
    ('$[::0]', [1], ValueError),  # step 0 raises on a list...
    ('$[::0]', {'a': 1}, False),  # ...and not elsewhere
    ('$[0,::0]', [1], True),  # the search stops at the first match, before the bad step
    ('$[::0,0]', [1], ValueError),
    ('$[5][::0]', [1], False),
    ('$[$.k]', {'k': 'x', 'x': 1}, True),  # a path as subscript: its value is the name
    ('$[$.k]', [7, 8], False),
    ('$[?(not not @.a)]', {'a': None}, True),
    ('$[?(@.a or @.b and @.c)]', {'c': 0, 'a': 0}, True),  # and binds looser than or
    ('$[?(@.s.length() = 0)]', {'s': ''}, True),
    ('$.s.charAt(true)', {'s': 'xy'}, True),
    ('$..[0]', [[]], True),  # recursive descent starts at the node itself
    ('$[?("")]', {}, False),
    ('$[?([0])]', {}, True),
)

Verdict = Union[bool, Exception]


@dataclass
class Case:
    """A text and what jsonpath2 makes of it: a tree, or the reason it refuses the text."""

    gen: Generated
    path: Path | None
    error: str = ''


def verdict(predicate: Callable[[Any], Any], doc: Any) -> Verdict:
    """The predicate's answer, or the exception it raised."""
    try:
        return bool(predicate(doc))
    except Exception as exc:
        return exc


def jsonpath2_finds(path: Path) -> Callable[[Any], bool]:
    """The rule the fast matcher copies: jsonpath2 yields at least one match."""
    return lambda doc: next(iter(path.match(doc)), None) is not None


def agree(got: Verdict, want: Verdict) -> bool:
    """Same truth value, or both raised (of any kind)."""
    if isinstance(want, Exception):
        return isinstance(got, Exception)
    return got is want


def parse_jsonpath2(gen: Generated) -> Case:
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # antlr prints every syntax error before raising it
            return Case(gen, Path.parse_str(gen.text))
    except Exception as exc:
        return Case(gen, None, f'{type(exc).__name__}: {exc}')


def tree_difference(ours: Any, theirs: Any) -> str | None:
    """Where the fast parser's tree first differs from jsonpath2's (types included: 1, 1.0, True differ)."""
    stack = [(ours, theirs, 'path')]
    while stack:
        ours, theirs, where = stack.pop()
        if type(ours) is not type(theirs):
            return f'{where}: {ours!r} ({type(ours).__name__}), jsonpath2 has {theirs!r} ({type(theirs).__name__})'
        if isinstance(theirs, (types.FunctionType, types.BuiltinFunctionType)):
            if ours is not theirs:
                return f'{where}: function {ours!r}, jsonpath2 has {theirs!r}'
        elif isinstance(theirs, (list, tuple)):
            if len(ours) != len(theirs):
                return f'{where}: {len(ours)} items {ours!r}, jsonpath2 has {len(theirs)} {theirs!r}'
            stack += reversed([(a, b, f'{where}[{i}]') for i, (a, b) in enumerate(zip(ours, theirs))])
        elif isinstance(theirs, dict):
            if list(ours) != list(theirs):
                return f'{where}: keys {list(ours)}, jsonpath2 has {list(theirs)}'
            stack += reversed([(ours[k], theirs[k], f'{where}[{k!r}]') for k in theirs])
        elif isinstance(theirs, float):
            if repr(ours) != repr(theirs):  # tells -0.0 from 0.0
                return f'{where}: {ours!r}, jsonpath2 has {theirs!r}'
        elif hasattr(theirs, '__dict__'):
            if sorted(vars(ours)) != sorted(vars(theirs)):
                return f'{where}: attributes {sorted(vars(ours))}, jsonpath2 has {sorted(vars(theirs))}'
            stack += reversed([(getattr(ours, k), v, f'{where}.{k}') for k, v in vars(theirs).items()])
        elif ours != theirs:
            return f'{where}: {ours!r}, jsonpath2 has {theirs!r}'
    return None


def walk(tree: Any) -> Iterator[Any]:
    """Every object in a tree: nodes, subscripts, expressions, their lists and literal values (no recursion)."""
    stack = [tree]
    while stack:
        value = stack.pop()
        yield value
        if isinstance(value, (list, tuple)):
            stack += value
        elif isinstance(value, dict):
            stack += value.values()
        elif hasattr(value, '__dict__') and not isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
            stack += vars(value).values()


def kinds(path: Path) -> set[str]:
    """The classes in a tree, and the types of its literal values."""
    return {type(value).__name__ for value in walk(path)}


def shown(doc: Any) -> str:
    text = json.dumps(doc, ensure_ascii=False)
    return text if len(text) < 3000 else text[:3000] + '...'


def failure(problems: list[str], out_of: int, what: str) -> str:
    head = f'seed {SEED} (PATHMATCH_SEED={SEED} to rerun): {len(problems)} of {out_of} {what}; the first ones:'
    return '\n\n'.join([head, *problems[:SHOWN]])


@pytest.fixture(scope='module')
def cases() -> list[Case]:
    """Every generated text, parsed (or refused) by jsonpath2."""
    return [parse_jsonpath2(gen) for gen in [*PathGen(SEED).texts(TEXTS), *PathGen.deep()]]


@pytest.fixture(scope='module')
def fast(cases: list[Case]) -> list[Path | Exception]:
    """What the fast parser makes of each text: a tree, or the exception it raised."""
    out: list[Path | Exception] = []
    for case in cases:
        try:
            out.append(pathparser.parse(case.gen.text))
        except Exception as exc:
            out.append(exc)
    return out


@pytest.fixture(scope='module')
def groups(cases: list[Case]) -> list[tuple[Case, list[Any]]]:
    """Each valid text with its documents: both fixture events, shared ones, ones made for it; then the quirks."""
    docs = DocGen(f'docs/{SEED}')
    events = [json.loads((FIXTURES / name).read_text(encoding='utf-8')) for name in EVENT_FILES]
    odd = [{}, [], None, 0, '', [[]], {'': None}, {'data': {}}, {'data': [None, [], {}]}]
    pool = [*(docs.document() for _ in range(250)), *(docs.event(events[i % 2]) for i in range(150)), *odd]
    pick = random.Random(f'pick/{SEED}')
    out = []
    for case in cases:
        if case.path is not None and case.gen.docs:
            out.append((case, [*events, *pick.sample(pool, SHARED_DOCS), *case.gen.docs]))
        elif case.path is not None:
            own = [docs.witness(case.path, case.gen.names, case.gen.values) for _ in range(OWN_DOCS - 1)]
            own.append(docs.document(case.gen.names, case.gen.values))
            out.append((case, [*events, *pick.sample(pool, SHARED_DOCS), *own]))
    out += [(parse_jsonpath2(Generated(text)), [doc]) for text, doc, _ in QUIRKS]
    return out


@pytest.fixture(scope='module')
def expected(groups: list[tuple[Case, list[Any]]]) -> list[list[Verdict]]:
    """jsonpath2's answer for every pair, computed before anything else touches the trees or documents."""
    return [[verdict(jsonpath2_finds(case.path), doc) for doc in docs] for case, docs in groups]


def test_the_corpus_covers_the_grammar(cases: list[Case], expected: list[list[Verdict]]):
    """The generator reaches every construct, jsonpath2 refuses a fair share, and answers vary."""
    valid = [case for case in cases if case.path is not None]
    counts = Counter(kind for case in valid for kind in kinds(case.path))
    assert not [kind for kind in TREE_CLASSES if counts[kind] < 5], (SEED, counts)
    assert 0.1 * len(cases) < len(cases) - len(valid) < 0.35 * len(cases), (SEED, len(valid), len(cases))
    assert CONSUMER in {case.gen.text for case in valid}
    answers = [answer for group in expected for answer in group]
    found = sum(answer is True for answer in answers)
    raised = sum(isinstance(answer, Exception) for answer in answers)
    assert 0.15 * len(answers) < found < 0.85 * len(answers) and raised >= 10, (SEED, found, raised, len(answers))
    print(f'\nseed {SEED}: {len(cases)} texts, {len(valid)} valid; {len(answers)} pairs, {found} found, {raised} raise')


@pytest.mark.parametrize('text, doc, answer', QUIRKS)
def test_quirks_are_kept(text: str, doc: Any, answer: bool | type):
    """jsonpath2 really answers so, and so do the compiled paths (from either parser)."""
    path = Path.parse_str(text)
    predicates = {'jsonpath2': jsonpath2_finds(path), 'compiled': pathcompiler.compile_path(path)}
    with contextlib.suppress(pathparser.Unsupported):
        predicates['compiled fast tree'] = pathcompiler.compile_path(pathparser.parse(text))
    for who, predicate in predicates.items():
        got = verdict(predicate, doc)
        assert isinstance(got, Exception) if answer is ValueError else got is answer, (who, text, doc, got)


def test_the_fast_parser_builds_jsonpath2s_trees(cases: list[Case], fast: list[Path | Exception]):
    """Accepted texts give jsonpath2's very tree; texts jsonpath2 refuses are refused as Unsupported."""
    problems = []
    for case, ours in zip(cases, fast):
        text = case.gen.text
        if isinstance(ours, pathparser.Unsupported):
            continue
        if isinstance(ours, Exception):
            problems.append(f'text: {text!r}\nraised {ours!r}, not pathparser.Unsupported')
        elif case.path is None:
            problems.append(f'text: {text!r}\naccepted as {ours}; jsonpath2 refuses it: {case.error}')
        elif difference := tree_difference(ours, case.path):
            problems.append(f'text: {text!r}\n{difference}')
    assert not problems, failure(problems, len(cases), 'texts parsed differently')


def test_the_fast_parser_leaves_little_to_jsonpath2(cases: list[Case], fast: list[Path | Exception]):
    """At least 90% of the valid texts without callables are parsed without jsonpath2."""
    plain = plain_done = 0
    reasons: Counter[str] = Counter()
    for case, ours in zip(cases, fast):
        if case.path is None:
            continue
        done = not isinstance(ours, Exception)
        if not any(isinstance(value, CallableSubscript) for value in walk(case.path)):
            plain += 1
            plain_done += done
        if not done:
            reasons[str(ours)[:60]] += 1
    valid = sum(case.path is not None for case in cases)
    left = sum(reasons.values())
    print(f'\nseed {SEED}: the fast parser left {left} of {valid} valid texts to jsonpath2;', end=' ')
    print(f'without callables it parsed {plain_done} of {plain} ({plain_done / plain:.1%})')
    print(f'  why: {dict(reasons.most_common(8))}')
    assert plain_done >= 0.9 * plain, (SEED, plain_done, plain)


def compare(groups: list[tuple[Case, list[Any]]], expected: list[list[Verdict]], trees: list[Any]) -> None:
    """Compile each tree and hold its answers to jsonpath2's, document by document."""
    snapshots = {id(doc): json.dumps(doc) for _, docs in groups for doc in docs}
    problems, compared, began = [], 0, time.perf_counter()
    for (case, docs), answers, tree in zip(groups, expected, trees):
        if tree is None:
            continue
        text = case.gen.text
        try:
            predicate = pathcompiler.compile_path(tree)
        except Exception as exc:
            problems.append(f'text: {text!r}\ncompile_path raised {exc!r}')
            continue
        for doc, want in zip(docs, answers):
            compared += 1
            got = verdict(predicate, doc)
            if not agree(got, want):
                problems.append(f'text: {text!r}\ndocument: {shown(doc)}\njsonpath2: {want!r}, compiled: {got!r}')
    changed = [shown(doc) for _, docs in groups for doc in docs if json.dumps(doc) != snapshots[id(doc)]]
    assert not changed, f'seed {SEED}: the compiled predicates changed documents, e.g. {changed[0]}'
    print(f'\nseed {SEED}: {compared} pairs compared in {time.perf_counter() - began:.1f} s')
    assert not problems, failure(problems, compared, 'answers differ')


def test_compiled_paths_answer_as_jsonpath2(groups: list[tuple[Case, list[Any]]], expected: list[list[Verdict]]):
    """compile_path on jsonpath2's own trees: every valid text, every document."""
    compare(groups, expected, [case.path for case, _ in groups])


def test_compiled_fast_trees_answer_as_jsonpath2(groups: list[tuple[Case, list[Any]]], expected: list[list[Verdict]]):
    """compile_path on the fast parser's trees, for the texts it accepts."""
    trees = []
    for case, _ in groups:
        try:
            trees.append(pathparser.parse(case.gen.text))
        except Exception:  # Unsupported, or a fault the parser test reports
            trees.append(None)
    compare(groups, expected, trees)
