"""jsonpath: the seed's bare paths, parsing once, and what filters apply to."""

from __future__ import annotations

import json

import pytest

from pacifica.notifications import jsonpath

from .conftest import FIXTURES

pytestmark = pytest.mark.fast

EVENT = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))


@pytest.mark.parametrize(
    'text, rooted', [('data', '$.data'), ('  data[*]  ', '$.data[*]'), ('["data"]', '$["data"]'), ('$.data', '$.data')]
)
def test_normalize(text, rooted):
    assert jsonpath.normalize(text) == rooted


def test_parse_once():
    assert jsonpath.parse('$.eventType') is jsonpath.parse('$.eventType')


def test_filters_apply_to_the_node_they_follow():
    items = '$.data[*][?(@.mimetype = "text/plain")]._id'
    assert jsonpath.find(items, EVENT) == [34, 35]
    assert jsonpath.find('$.data[?(@.mimetype = "text/plain")]', EVENT) == []


def test_matches_is_non_empty_result():
    assert jsonpath.matches('data', EVENT)
    assert not jsonpath.matches('$.nothing', EVENT)
    assert jsonpath.matches('$.extensions.comExampleExtension', EVENT)


@pytest.mark.parametrize('text', ['$..', '$[', 'data[?(', '$.a[?(@.b = )]'])
def test_bad_expressions(text):
    with pytest.raises(jsonpath.JsonPathError, match='invalid jsonpath'):
        jsonpath.parse(text)


INDEXED = [
    'data',
    '$.data[*][?(@.mimetype = "text/plain")]._id',
    '$.data[*][?(@.destinationTable = "Files" and @.size > 10)]',
    '$.data[*][?(@.destinationTable = "Files" or @.destinationTable = "Nope")]',
    '$.data[*][?(@.destinationTable = "Nope" or @.key = "Nope")]',
    '$.data[*][?(@.value = "Blah")].value',
    '$.data[*][?(not (@.destinationTable = "Files"))]',
    '$.data[*][?(@.size = 1)]',
    '$..mimetype',
    '$..nothing',
    '$["data"][0]',
    '$[?(@["eventType"] = "org.pacifica.metadata.ingest")]',
    '$.extensions.comExampleExtension',
    '$.data[*][?(@.name = @.subdir)]',
    '$.data[0,1]',
    '$.data.length()',
]


def test_the_index_never_hides_a_match():
    from pacifica.notifications.pathindex import PathIndex, requirements, tokens

    events = [EVENT, {'data': [{'destinationTable': 'Nope'}]}, {'data': []}, {}, {'nothing': 1, 'x': {'mimetype': 2}}]
    index = PathIndex((text, requirements(jsonpath.parse(text))) for text in INDEXED)
    for event in events:
        candidates = set(index.candidates(tokens(event)))
        matching = {text for text in INDEXED if jsonpath.matches(text, event)}
        assert matching <= candidates, (event, matching - candidates)
    assert len(index.candidates(tokens({}))) < len(INDEXED)  # and it does leave some out
