"""Inserts by reused statements store what ``Model.save`` would, on every database."""

from __future__ import annotations

import pytest
from peewee import IntegrityError

from pacifica.notifications import statements
from pacifica.notifications.orm import EventLog, EventMatch, utcnow

pytestmark = pytest.mark.fast


def stored(model, key) -> dict:
    return model.get_by_id(key).__data__


def subscription(name: str, now) -> EventMatch:
    return EventMatch(name=name, jsonpath='data', user='u', target_url='http://127.0.0.1:9/', created=now, updated=now)


def test_a_reused_insert_stores_what_save_stores(synced):
    now = utcnow()
    by_save = subscription('a', now)
    by_save.save(force_insert=True)
    ours = [subscription(f'b{n}', now) for n in range(6)]
    assert statements.insert(ours[:3]) == 3
    assert statements.insert(ours[3:]) == 3  # the same shape: the statement written for the first three
    own = ('uuid', 'name', 'signing_secret')  # what each row has of its own
    expected = {key: value for key, value in stored(EventMatch, by_save.uuid).items() if key not in own}
    secrets = {stored(EventMatch, by_save.uuid)['signing_secret']}
    for row in ours:
        found = stored(EventMatch, row.uuid)
        assert (found['name'], found['signing_secret']) == (row.name, row.signing_secret)
        assert {key: value for key, value in found.items() if key not in own} == expected
        secrets.add(found['signing_secret'])
    assert len(secrets) == len(ours) + 1


def test_conflicts_are_skipped_only_when_asked(synced):
    now = utcnow()
    first = EventLog(jsondata='{"a": 1}', dedup_key='k' * 64, created=now, retry_at=now)
    assert statements.insert([first], ignore_conflicts=True) == 1
    again = [
        EventLog(jsondata='{"a": 2}', dedup_key='k' * 64, created=now, retry_at=now),
        EventLog(jsondata='{"a": 3}', dedup_key='j' * 64, created=now, retry_at=now),
    ]
    assert statements.insert(again, ignore_conflicts=True) == 1
    assert EventLog.get(EventLog.dedup_key == 'k' * 64).jsondata == '{"a": 1}'
    assert EventLog.get(EventLog.dedup_key == 'j' * 64).jsondata == '{"a": 3}'
    with pytest.raises(IntegrityError):
        statements.insert([EventLog(jsondata='{}', dedup_key='k' * 64, created=now, retry_at=now)])
