"""``GET /status`` and ``GET /metrics`` against a real API and worker: what an operator and Prometheus see."""

from __future__ import annotations

import os
import re

import requests

from .conftest import served_api
from .httpfakes import Answer
from .procs import wait_until
from .stack import fresh_event, settled


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value in Prometheus text (0 when it is not there)."""
    wanted = ','.join(f'{key}="{value}"' for key, value in labels.items())
    pattern = rf'^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$' if labels else rf'^{re.escape(name)} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def scrape(stack) -> str:
    resp = requests.get(stack.api.url + '/metrics', timeout=10)
    assert resp.status_code == 200 and resp.headers['Content-Type'].startswith('text/plain'), resp.text
    return resp.text


def test_status_reports_every_part_without_a_user(stack):
    resp = requests.get(stack.api.url + '/status', timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {'status', 'version', 'schema', 'database', 'broker', 'backlog', 'oldest_pending_seconds'}
    assert (body['status'], body['database'], body['broker'], body['schema']) == ('ok', 'ok', 'ok', '7.0')
    assert set(body['backlog']) == {'dispatch', 'policy', 'deliveries'}
    assert all(isinstance(count, int) and count >= 0 for count in body['backlog'].values())
    assert requests.post(stack.api.url + '/status', timeout=10).status_code == 405
    assert requests.get(stack.api.url + '/status/deeper', timeout=10).status_code == 404


def test_status_counts_the_backlog(stack, case):
    user, path = case
    stack.target.script(path, Answer(200, delay=3))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    stack.post_event()
    wait_until(lambda: stack.target.calls(path), 30, what='the slow delivery to start')
    body = requests.get(stack.api.url + '/status', timeout=10).json()
    assert body['backlog']['deliveries'] >= 1 and body['oldest_pending_seconds'] is not None
    settled(sub)


def test_metrics_add_up_the_workers_work(stack, case):
    user, path = case
    before = scrape(stack)
    stack.target.script(path, Answer(503), Answer(200))
    stack.policy.script(f'/events/{user}-denied', Answer(412))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    denied = stack.subscribe(f'{user}-denied', target_url=stack.target.url + path + '/never')
    event = fresh_event()
    stack.post_event(event)
    stack.post_event(event)  # a duplicate
    assert requests.post(stack.api.url + '/receive', data=b'[]', timeout=10).status_code == 415
    wait_until(lambda: len(stack.target.calls(path)) == 2, 30, what='the retried delivery')
    settled(sub), settled(denied)
    after = scrape(stack)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    events, deliveries = 'pacifica_notifications_events_received_total', 'pacifica_notifications_deliveries_total'
    assert grew(events, outcome='stored') >= 1 and grew(events, outcome='duplicate') >= 1
    assert grew(events, outcome='rejected') >= 1
    assert grew(deliveries, outcome='delivered') >= 1 and grew(deliveries, outcome='retried') >= 1
    assert grew(deliveries, outcome='denied') >= 1
    assert grew('pacifica_notifications_delivery_latency_seconds_count') >= 1
    assert grew('pacifica_notifications_policy_latency_seconds_count') >= 2
    assert sample(after, 'pacifica_notifications_subscriptions', state='live') >= 2
    assert 'pacifica_notifications_backlog{stage="deliveries"}' in after
    assert event['eventID'] not in after and 'whsec_' not in after


def test_probes_move_or_turn_off_and_say_when_down(tmp_path):
    settings = {'STATUS_PATH': '/health', 'METRICS_PATH': '', 'BROKER_URL': 'amqp://guest:guest@127.0.0.1:1//'}
    with served_api(tmp_path, **settings) as base:
        assert requests.get(base + '/status', timeout=10).status_code == 404
        assert requests.get(base + '/metrics', timeout=10).status_code == 404
        resp = requests.get(base + '/health', timeout=10)
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert (body['status'], body['database'], body['broker']) == ('unavailable', 'ok', 'unavailable')
        if not os.environ.get('TEST_PEEWEE_URL'):
            (tmp_path / 'test.sqlite3').rename(tmp_path / 'moved')
            (tmp_path / 'test.sqlite3').mkdir()  # a folder where the database was: it cannot be opened
            down = requests.get(base + '/health', timeout=10).json()
            (tmp_path / 'test.sqlite3').rmdir()
            (tmp_path / 'moved').rename(tmp_path / 'test.sqlite3')
            assert (down['database'], down['backlog'], down['schema']) == ('unavailable', None, None)
