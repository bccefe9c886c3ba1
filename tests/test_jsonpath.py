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
