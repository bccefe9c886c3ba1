"""Replay: a subscriber recovers the events it missed, through a real API, worker, policy server and target."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from .httpfakes import Answer
from .procs import wait_until
from .stack import Stack, fetched, fresh_event, rows_of, settled


def call(stack: Stack, user: str, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, stack.api.url + path, json=body, headers={'Http-Remote-User': user}, timeout=30)


def replay(stack: Stack, user: str, sub: dict, **body) -> requests.Response:
    return call(stack, user, 'POST', f'/eventmatch/{sub["uuid"]}/replay', body)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def now() -> datetime:
    return datetime.now(timezone.utc)


def delivered_ids(stack: Stack, path: str) -> list[str]:
    return [call_.json()['eventID'] for call_ in stack.target.calls(path) if call_.body]


def test_replay_sends_what_was_missed_and_nothing_twice(stack, case):
    user, path = case
    start = now() - timedelta(seconds=1)
    source = f'/replay/{uuid.uuid4().hex}'  # this test's events alone match, whatever else is in the span

    def mine() -> dict:
        return {**fresh_event(), 'source': source}

    before = mine()
    stack.post_event(before)  # before the subscription existed
    stack.target.script(path, Answer(200), Answer(404, 'gone for now'))
    sub = stack.subscribe(user, jsonpath=f'$[?(@.source = "{source}")]', target_url=stack.target.url + path)
    taken, refused, missed = mine(), mine(), mine()
    stack.post_event(taken)
    settled(sub)
    stack.post_event(refused)
    wait_until(lambda: fetched(sub).disabled, 30, what='the subscription to be disabled')
    stack.post_event(missed)  # while disabled: not matched
    unrelated = stack.post_event()  # in the span, but another source
    assert len(rows_of(sub)) == 2

    assert replay(stack, user, sub, since=iso(start)).status_code == 409  # still disabled
    stack.target.script(path, Answer(200))
    assert call(stack, user, 'PUT', f'/eventmatch/{sub["uuid"]}', {'disabled': None, 'error': None}).ok
    resp = replay(stack, user, sub, since=iso(start))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {'queued': 3}
    wait_until(
        lambda: len(rows_of(sub)) == 4 and all(row.target_status_code == '200' for row in rows_of(sub)),
        30,
        what='the replayed deliveries',
    )
    ids = delivered_ids(stack, path)  # the refused one twice: refused, then replayed
    assert sorted(ids) == sorted(
        [taken['eventID'], refused['eventID'], before['eventID'], refused['eventID'], missed['eventID']]
    )
    assert unrelated not in {str(row.event_log_id) for row in rows_of(sub)}
    wait_until(lambda: all(row.retry_at is None for row in rows_of(sub)), 30, what='the replay to finish')
    again = replay(stack, user, sub, since=iso(start))
    assert again.json() == {'queued': 0}
    assert len(stack.policy.calls(f'/events/{user}')) >= 5  # each replayed event asked the policy server


def test_a_second_replay_while_one_runs_is_409(stack, case):
    user, path = case
    start = now() - timedelta(seconds=1)
    event = fresh_event()
    stack.post_event(event)
    stack.target.script(path, Answer(200, delay=3))
    only_this = f'$[?(@.eventID = "{event["eventID"]}")]'  # not the events of other tests in the span
    sub = stack.subscribe(user, jsonpath=only_this, target_url=stack.target.url + path)
    first = replay(stack, user, sub, since=iso(start))
    assert first.json() == {'queued': 1}
    second = replay(stack, user, sub, since=iso(start))
    assert second.status_code == 409 and 'under way' in second.json()['message']
    settled(sub)


@pytest.mark.parametrize(
    'body, words',
    [
        ({}, "body: 'since' is a required property"),
        ({'since': 'last week'}, 'not an ISO 8601'),
        ({'since': 5}, "since: 5 is not of type 'string'"),
        ({'since': '2026-01-02T00:00:00Z', 'until': '2026-01-01T00:00:00Z'}, 'until must be later'),
        ({'since': '2026-01-01T00:00:00Z', 'until': '2026-01-09T00:00:00Z'}, 'at most 7 days'),
        ({'since': '2026-01-01T00:00:00Z', 'colour': 'red'}, "('colour' was unexpected)"),
        ({'since': '2026-01-01T00:00:00Z', 'until': '0001-01-01T00:00:00+20:01'}, 'from year 1 to 9999'),
    ],
)
def test_bad_replays_are_400(stack, case, body, words):
    user, _path = case
    sub = stack.subscribe(user, target_url='http://127.0.0.1:9/')
    resp = replay(stack, user, sub, **body)
    assert resp.status_code == 400 and words in resp.json()['message'], resp.text


def test_only_the_owner_replays(stack, case):
    user, _path = case
    sub = stack.subscribe(user, target_url='http://127.0.0.1:9/')
    assert replay(stack, 'someone-else', sub, since=iso(now() - timedelta(hours=1))).status_code == 403
