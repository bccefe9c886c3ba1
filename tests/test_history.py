"""A subscriber's own view of the log: its deliveries page by page, and one event, over a real API and worker."""

from __future__ import annotations

import uuid

import pytest
import requests

from .conftest import run_cmd
from .httpfakes import Answer
from .procs import wait_until
from .stack import Stack, fresh_event, rows_of, settled


def get(stack: Stack, user: str, path: str, **params) -> requests.Response:
    return requests.get(stack.api.url + path, params=params, headers={'Http-Remote-User': user}, timeout=10)


def page(stack: Stack, user: str, sub: dict, **params) -> dict:
    resp = get(stack, user, f'/eventmatch/{sub["uuid"]}/deliveries', **params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def all_items(stack: Stack, user: str, sub: dict, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        answer = page(stack, user, sub, **params, **({'before': cursor} if cursor else {}))
        items.extend(answer['items'])
        cursor = answer['next']
        if cursor is None:
            return items


def test_deliveries_come_newest_first_a_page_at_a_time(stack, case):
    user, path = case
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    events = [fresh_event() for _ in range(7)]
    uuids = [stack.post_event(event) for event in events]
    settled(sub, 7)
    first = page(stack, user, sub, limit=3)
    assert len(first['items']) == 3 and first['next']
    items = all_items(stack, user, sub, limit=3)
    assert [item['event_uuid'] for item in items] == uuids[::-1]
    assert [item['event_id'] for item in items] == [event['eventID'] for event in events][::-1]
    assert [item['received'] for item in items] == sorted((item['received'] for item in items), reverse=True)
    assert {item['state'] for item in items} == {'delivered'}
    assert {(item['attempts'], item['next_attempt'], item['target_status_code']) for item in items} == {
        (1, None, '200')
    }
    assert all_items(stack, user, sub, limit=500) == items
    assert page(stack, user, sub)['items'] == items  # 50 by default


def test_each_state_and_the_filter(stack, case):
    user, path = case
    stack.policy.script(f'/events/{user}', Answer(200), Answer(412, '{"status": "error"}'), Answer(200))
    stack.target.script(path, Answer(200), Answer(404, 'no such page'), Answer(200, delay=3))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    delivered, denied = stack.post_event(), stack.post_event()
    settled(sub, 2)
    failed = stack.post_event()
    wait_until(lambda: len(rows_of(sub)) == 3 and rows_of(sub)[-1].retry_at is None, 30, what='the refusal')
    requests.put(
        f'{stack.api.url}/eventmatch/{sub["uuid"]}',
        json={'disabled': None, 'error': None},
        headers={'Http-Remote-User': user},
        timeout=10,
    )
    pending = stack.post_event()
    wait_until(lambda: len(stack.target.calls(path)) == 3, 30, what='the slow delivery to start')
    states = {item['event_uuid']: item['state'] for item in page(stack, user, sub)['items']}
    assert states == {delivered: 'delivered', denied: 'denied', failed: 'failed', pending: 'pending'}
    for state, event_uuid in (('delivered', delivered), ('denied', denied), ('failed', failed), ('pending', pending)):
        assert [item['event_uuid'] for item in page(stack, user, sub, state=state)['items']] == [event_uuid]
    (refused,) = page(stack, user, sub, state='failed')['items']
    assert (refused['target_status_code'], refused['target_resp_body']) == ('404', 'no such page')
    (waiting,) = page(stack, user, sub, state='pending')['items']
    assert waiting['next_attempt'] is not None


def test_eventget_and_the_deliveries_route_agree(stack, case):
    user, path = case
    stack.target.script(path, Answer(503), Answer(200))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    event_uuid = stack.post_event()
    wait_until(lambda: (rows_of(sub) or [None])[0] and rows_of(sub)[0].target_status_code == '200', 30)
    (item,) = page(stack, user, sub)['items']
    shown = run_cmd(stack.env, 'eventget', event_uuid).stdout.splitlines()
    line = next(text for text in shown if text.strip().startswith(f'ELM {sub["uuid"]}'))
    assert line.endswith(f'policy {item["policy_status_code"]} target {item["target_status_code"]}')
    assert item['attempts'] == 2 and item['state'] == 'delivered'


@pytest.mark.parametrize(
    'params, words',
    [
        ({'limit': '0'}, 'limit'),
        ({'limit': '501'}, 'limit'),
        ({'limit': 'ten'}, 'limit'),
        ({'state': 'lost'}, 'state: expected one of pending, delivered, denied, failed'),
        ({'before': 'not-a-cursor'}, 'before'),
        ({'colour': 'red'}, ''),
    ],
)
def test_bad_query_values_are_400(stack, case, params, words):
    user, _path = case
    sub = stack.subscribe(user, target_url='http://127.0.0.1:9/')
    resp = get(stack, user, f'/eventmatch/{sub["uuid"]}/deliveries', **params)
    assert resp.status_code in ((400, 404) if not words else (400,)), resp.text
    assert words in resp.json()['message']


def test_only_the_owner_sees_deliveries(stack, case):
    user, _path = case
    sub = stack.subscribe(user, target_url='http://127.0.0.1:9/')
    assert get(stack, 'someone-else', f'/eventmatch/{sub["uuid"]}/deliveries').status_code == 403
    listed = get(stack, user, '/eventmatch', limit='5')
    assert listed.status_code == 400 and '/eventmatch/<uuid>/deliveries' in listed.json()['message']
    assert get(stack, user, f'/eventmatch/{sub["uuid"]}/deliveries/50').status_code == 404  # not a limit


def test_an_event_shows_only_the_callers_own_deliveries(stack, case):
    user, path = case
    other = f'other-{uuid.uuid4().hex[:8]}'
    mine = stack.subscribe(user, target_url=stack.target.url + path)
    theirs = stack.subscribe(other, target_url=stack.target.url + path + '/theirs')
    event = fresh_event()
    event_uuid = stack.post_event(event)
    settled(mine), settled(theirs)
    resp = get(stack, user, f'/events/{event_uuid}')
    assert resp.status_code == 200, resp.text
    shown = resp.json()
    assert (shown['uuid'], shown['event']) == (event_uuid, event)
    assert [entry['subscription'] for entry in shown['deliveries']] == [mine['uuid']]
    assert shown['deliveries'][0]['state'] == 'delivered'
    assert get(stack, 'nobody', f'/events/{event_uuid}').status_code == 403
    assert get(stack, user, f'/events/{uuid.uuid4()}').status_code == 403
    assert get(stack, user, '/events/not-a-uuid').status_code == 400
