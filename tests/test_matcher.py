"""The in-memory copy of the subscriptions: it follows every change, reading only what changed."""

from __future__ import annotations

import gc
import json
from datetime import timedelta

import pytest

from pacifica.notifications import subscriptions
from pacifica.notifications.matcher import Matcher
from pacifica.notifications.orm import EventMatch, utcnow

from .conftest import FIXTURES

pytestmark = pytest.mark.fast

EVENT = json.loads((FIXTURES / 'metadata-ingest-event.json').read_text(encoding='utf-8'))
FILES = '$.data[*][?(@.destinationTable = "Files")]'
NOWHERE = '$.data[*][?(@.destinationTable = "Nowhere")]'


def create(jsonpath: str, user: str = 'u') -> EventMatch:
    body = {'name': 'n', 'jsonpath': jsonpath, 'target_url': 'http://127.0.0.1:9/'}
    return subscriptions.create(user, body)


def names(matched: list[EventMatch]) -> set[str]:
    return {str(sub.uuid) for sub in matched}


def test_creates_updates_and_deletes_are_seen_by_the_next_match(synced):
    matcher = Matcher()
    assert matcher.match(EVENT, utcnow()) == []
    first, second = create(FILES), create(FILES, user='v')
    assert names(matcher.match(EVENT, utcnow())) == {str(first.uuid), str(second.uuid)}
    subscriptions.update(first, {'jsonpath': NOWHERE})
    assert names(matcher.match(EVENT, utcnow())) == {str(second.uuid)}
    subscriptions.update(first, {'jsonpath': 'data'})
    subscriptions.delete(second)
    assert names(matcher.match(EVENT, utcnow())) == {str(first.uuid)}
    assert matcher.stats() == {
        'subscriptions': 1,
        'expressions': 1,
        'unparsable': 0,
        'parsed_by_jsonpath2': 0,
        'matched_by_jsonpath2': 0,
    }


def test_an_event_sees_only_subscriptions_made_before_it_arrived(synced):
    matcher = Matcher()
    received = utcnow()
    create(FILES)
    assert matcher.match(EVENT, received) == []
    assert len(matcher.match(EVENT, utcnow())) == 1


def test_a_disabled_subscription_stops_and_a_reenabled_one_resumes(synced):
    matcher = Matcher()
    sub = create(FILES)
    now = utcnow()
    EventMatch.update(disabled=now, updated=now).where(EventMatch.uuid == sub.uuid).execute()
    assert matcher.match(EVENT, utcnow()) == []
    subscriptions.update(EventMatch.get_by_id(sub.uuid), {'disabled': None})
    assert len(matcher.match(EVENT, utcnow())) == 1


def test_a_change_committed_after_a_later_one_is_still_found(synced):
    """The change with the older time arrives last (a slow transaction): the margin re-reads it."""
    matcher = Matcher()
    create(NOWHERE)
    matcher.current()
    late = create(FILES)
    EventMatch.update(updated=late.updated - timedelta(seconds=matcher.CHANGE_MARGIN / 2)).where(
        EventMatch.uuid == late.uuid
    ).execute()
    assert names(matcher.match(EVENT, utcnow())) == {str(late.uuid)}


def test_a_change_stamped_by_a_lagging_clock_is_found_by_the_full_check(synced):
    matcher = Matcher()
    create(NOWHERE)
    matcher.current()
    lagging = create(FILES)
    EventMatch.update(updated=lagging.updated - timedelta(hours=1)).where(EventMatch.uuid == lagging.uuid).execute()
    assert matcher.match(EVENT, utcnow()) == []  # too far back for the margin
    matcher.FULL_CHECK = 0.0
    assert names(matcher.match(EVENT, utcnow())) == {str(lagging.uuid)}


def test_subscriptions_sharing_an_expression_are_all_matched_and_an_unparsable_one_is_skipped(synced):
    matcher = Matcher()
    made = [create(FILES, user=f'u{n}') for n in range(5)]
    now = utcnow()
    EventMatch.create(name='bad', jsonpath='$.[', user='x', target_url='http://127.0.0.1:9/', created=now, updated=now)
    assert names(matcher.match(EVENT, utcnow())) == {str(sub.uuid) for sub in made}
    assert matcher.stats()['unparsable'] == 1


def test_an_empty_table_is_loaded_once_then_followed_by_changes(synced):
    """Loading exempts what it made from the cycle collector: only once, or garbage would pile up."""
    matcher = Matcher()
    assert matcher.match(EVENT, utcnow()) == []
    frozen = gc.get_freeze_count()
    garbage = [[n] for n in range(1000)]
    assert matcher.match(EVENT, utcnow()) == []
    assert gc.get_freeze_count() <= frozen  # frozen objects freed since are no longer counted
    del garbage
    first = create(FILES)
    assert names(matcher.match(EVENT, utcnow())) == {str(first.uuid)}
