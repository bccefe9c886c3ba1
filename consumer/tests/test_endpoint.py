"""The endpoint the service delivers to: signed deliveries become jobs, once; others are refused or dropped."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from standardwebhooks import Webhook

from pacifica_notifications_consumer.endpoint import Endpoint
from pacifica_notifications_consumer.jobs import JobQueue

pytestmark = pytest.mark.fast

SECRET = 'whsec_' + base64.b64encode(b's' * 32).decode()


@pytest.fixture
def endpoint(tmp_path: Path):
    queue = JobQueue(tmp_path / 'jobs.sqlite3')
    served = Endpoint('127.0.0.1', 0, queue, lambda event: event.get('mine') is True)
    served.start()
    served.secret = SECRET
    served.accepting.set()
    yield served
    served.stop()
    queue.close()


def deliver(
    endpoint: Endpoint, event: dict, secret: str = SECRET, body: bytes | None = None, raw: bytes | None = None
) -> requests.Response:
    """POST ``event`` (or the bytes ``raw``) signed with ``secret``; ``body`` replaces what is sent after signing."""
    raw = raw if raw is not None else json.dumps(event).encode()
    msg_id = 'msg-' + str(time.monotonic_ns())
    signature = Webhook(secret).sign(msg_id, datetime.now(timezone.utc), raw.decode())
    headers = {'webhook-id': msg_id, 'webhook-timestamp': str(int(time.time())), 'webhook-signature': signature}
    return requests.post(f'http://127.0.0.1:{endpoint.port}/receive', data=body or raw, headers=headers, timeout=10)


def test_a_signed_event_is_queued_once(endpoint):
    event = {'eventID': 'e1', 'source': '/s', 'data': []}
    assert deliver(endpoint, event).status_code == 202
    assert deliver(endpoint, event).json() == {'status': 'duplicate'}
    assert endpoint.queue.counts()['queued'] == 1
    job = endpoint.queue.take(1)
    assert job is not None and job.event == event


def test_unsigned_or_tampered_deliveries_are_refused(endpoint):
    other = 'whsec_' + base64.b64encode(b'o' * 32).decode()
    assert deliver(endpoint, {'eventID': 'e2', 'source': '/s'}, secret=other).status_code == 401
    assert deliver(endpoint, {'eventID': 'e3', 'source': '/s'}, body=b'{"eventID": "e4"}').status_code == 401
    assert requests.post(f'http://127.0.0.1:{endpoint.port}/receive', data=b'{}', timeout=10).status_code == 401
    assert endpoint.queue.counts()['queued'] == 0


def test_a_signed_body_that_is_not_a_json_object_is_400(endpoint):
    for raw in (b'[1, 2]', b'not json'):
        answer = deliver(endpoint, {}, raw=raw)
        assert answer.status_code == 400 and 'not a structured event' in answer.json()['message'], answer.text
    assert endpoint.queue.counts()['queued'] == 0


def test_its_own_output_is_dropped_and_nothing_is_taken_while_stopping(endpoint):
    assert deliver(endpoint, {'eventID': 'e5', 'source': '/s', 'mine': True}).json()['status'] == 'ignored'
    endpoint.accepting.clear()
    assert deliver(endpoint, {'eventID': 'e6', 'source': '/s'}).status_code == 503
    assert endpoint.queue.counts()['queued'] == 0
