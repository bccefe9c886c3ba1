"""The delivery pipeline end to end: real API, real worker, real broker, real HTTP peers.

Events go in through ``POST /receive``; a ``celery -A pacifica.notifications.tasks
worker`` process matches them, asks the test policy server and delivers to the
catch-all target server, retrying on a short schedule (0.2 s, then 0.4 s).
"""

from __future__ import annotations

import base64
import uuid

import pytest
import requests

from .conftest import run_cmd
from .httpfakes import Answer
from .procs import free_port, wait_until
from .stack import EVENT, fetched, fresh_event, rows_of, settled

#: The jsonpath of the seed's example consumer (jsonpath2.txt).
CONSUMER_JSONPATH = (
    '$[?(@["eventID"] and (@["eventType"] = "org.pacifica.metadata.ingest") and '
    '(@["source"] = "/pacifica/metadata/ingest"))]["data"][*][?((@["destinationTable"] = "Files") '
    'and (@["mimetype"] = "text/plain"))]["_id"]'
)


def test_seed_consumer_jsonpath_routes_the_fixture_event(stack, case):
    user, path = case
    wanted = stack.subscribe(user, jsonpath=CONSUMER_JSONPATH, target_url=stack.target.url + path)
    unwanted = stack.subscribe(
        user, jsonpath=CONSUMER_JSONPATH.replace('text/plain', 'image/png'), target_url=stack.target.url + path + '/png'
    )
    event = fresh_event()
    event_uuid = stack.post_event(event)
    settled(wanted)
    calls = stack.target.calls(path)
    assert len(calls) == 1 and calls[0].json()['eventID'] == event['eventID']
    assert stack.target.calls(path + '/png') == [] and rows_of(unwanted) == []
    shown = run_cmd(stack.env, 'eventget', event_uuid).stdout.splitlines()
    assert shown[0] == f'Event - {event_uuid}'
    assert shown[2].startswith(f'    ELM {wanted["uuid"]} (') and shown[2].endswith(') policy 200 target 200')


def test_auth_extensions_and_headers_reach_the_target(stack, case):
    user, path = case
    basic = stack.subscribe(
        user,
        target_url=stack.target.url + path + '/basic',
        auth={'type': 'basic', 'basic': {'username': 'me', 'password': 'pw'}},
        extensions={'comExampleExtension': 'mine', 'added': 1},
    )
    header = stack.subscribe(
        user,
        target_url=stack.target.url + path + '/header',
        auth={'type': 'header', 'header': {'type': 'Bearer', 'credentials': 't0k'}},
    )
    stack.post_event()
    settled(basic), settled(header)
    (got_basic,) = stack.target.calls(path + '/basic')
    assert got_basic.headers['Authorization'] == 'Basic ' + base64.b64encode(b'me:pw').decode()
    assert got_basic.json()['extensions'] == {'comExampleExtension': 'mine', 'added': 1}
    assert got_basic.json()['data'] == EVENT['data']
    assert got_basic.headers['Content-Type'] == 'application/json'
    assert got_basic.headers['User-Agent'].startswith('pacifica-notifications/')
    assert got_basic.headers['webhook-id'] == str(rows_of(basic)[0].uuid)
    (got_header,) = stack.target.calls(path + '/header')
    assert got_header.headers['Authorization'] == 'Bearer t0k'
    assert got_header.json()['extensions'] == EVENT['extensions']


def test_one_policy_call_per_user_per_event(stack, case):
    user, path = case
    subs = [stack.subscribe(user, name=f's{i}', target_url=f'{stack.target.url}{path}/{i}') for i in range(3)]
    event = fresh_event()
    stack.post_event(event)
    for sub in subs:
        settled(sub)
    calls = stack.policy.calls(f'/events/{user}')
    assert len(calls) == 1 and calls[0].json() == event
    assert all(len(stack.target.calls(f'{path}/{i}')) == 1 for i in range(3))


def test_policy_denial_is_logged_not_delivered(stack, case):
    user, path = case
    stack.policy.script(f'/events/{user}', Answer(412, '{"status": "error", "message": "nope"}'))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    stack.post_event()
    (row,) = settled(sub)
    assert (row.policy_status_code, row.target_status_code) == ('412', None)
    assert 'nope' in row.policy_resp_body
    assert stack.target.calls(path) == [] and fetched(sub).disabled is None
    assert len(stack.policy.calls(f'/events/{user}')) == 1


def test_policy_outage_is_retried_then_delivered(stack, case):
    user, path = case
    stack.policy.script(f'/events/{user}', Answer(500, '{"status": "error"}'), Answer(503), Answer(200))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    stack.post_event()
    (row,) = settled(sub)
    assert (row.policy_status_code, row.target_status_code) == ('200', '200')
    assert len(stack.policy.calls(f'/events/{user}')) == 3
    assert fetched(sub).disabled is None


def test_policy_outage_past_the_schedule_disables(stack, case):
    user, path = case
    stack.policy.script(f'/events/{user}', Answer(500, '{"status": "error", "message": "unknown user"}'))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    stack.post_event()
    wait_until(lambda: fetched(sub).disabled, 30, what='subscription disabled')
    assert fetched(sub).error.startswith('policy server answered 500')
    assert 'gave up after 3 attempt(s)' in fetched(sub).error
    assert stack.target.calls(path) == []


@pytest.mark.parametrize('status, kind', [(404, 'rejected'), (410, 'gone'), (301, 'rejected')])
def test_target_refusal_disables_at_once(stack, case, status, kind):
    user, path = case
    stack.target.script(path, Answer(status, '{"why": "no such hook"}', {'Location': 'http://elsewhere/'}))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    stack.post_event()
    (row,) = settled(sub)
    assert (row.target_status_code, row.attempts) == (str(status), 1)
    wait_until(lambda: fetched(sub).disabled, 30, what='subscription disabled')
    assert fetched(sub).error == f'target answered {status}: {{"why": "no such hook"}}'
    assert len(stack.target.calls(path)) == 1


@pytest.mark.parametrize(
    'answers',
    [
        [Answer(503), Answer(500), Answer(200)],
        [Answer(429, headers={'Retry-After': '1'}), Answer(200)],
        [Answer(408), Answer(200)],
        [Answer(200, delay=1.5), Answer(200)],
    ],
    ids=['5xx', '429-retry-after', '408', 'slow'],
)
def test_target_trouble_is_retried_then_delivered(stack, case, answers):
    user, path = case
    stack.target.script(path, *answers)
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    stack.post_event()
    wait_until(lambda: rows_of(sub) and rows_of(sub)[0].is_delivered(), 30, what='delivery')
    (row,) = rows_of(sub)
    calls = stack.target.calls(path)
    assert row.attempts == len(answers) == len(calls)
    assert fetched(sub).disabled is None
    if answers[0].headers.get('Retry-After'):
        assert calls[1].at - calls[0].at >= 0.9


def test_target_down_past_the_schedule_disables(stack, case):
    user, _ = case
    sub = stack.subscribe(user, target_url=f'http://127.0.0.1:{free_port()}/closed')
    stack.post_event()
    wait_until(lambda: fetched(sub).disabled, 30, what='subscription disabled')
    (row,) = rows_of(sub)
    assert (row.target_status_code, row.attempts) == ('unreachable', 3)
    assert fetched(sub).error.startswith('target unreachable:')
    assert fetched(sub).error.endswith('gave up after 3 attempt(s)')


def test_eventretry_delivers_after_reenabling(stack, case):
    user, path = case
    stack.target.script(path, Answer(400, 'bad'), Answer(200))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    event_uuid = stack.post_event()
    wait_until(lambda: fetched(sub).disabled, 30, what='subscription disabled')
    resp = requests.put(
        f'{stack.api.url}/eventmatch/{sub["uuid"]}',
        json={'disabled': None, 'error': None},
        headers={'Http-Remote-User': user},
        timeout=10,
    )
    assert resp.status_code == 200
    done = run_cmd(stack.env, 'eventretry', event_uuid, '--wait', '30')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f'Event - {event_uuid} requeued'
    assert lines[-1].endswith('policy 200 target 200')
    assert len(stack.target.calls(path)) == 2
    again = run_cmd(stack.env, 'eventretry', event_uuid, '--wait', '5')
    assert again.stdout.splitlines()[-1].endswith('policy 200 target 200')
    assert len(stack.target.calls(path)) == 2


def test_eventretry_unknown_event(stack):
    done = run_cmd(stack.env, 'eventretry', str(uuid.UUID(int=3)))
    assert done.returncode == 1 and f'no such event: {uuid.UUID(int=3)}' in done.stderr
