"""HTTP out: Retry-After, auth, extensions, bounded bodies, failures as replies."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pacifica.notifications import delivery
from pacifica.notifications.delivery import Reply

from .httpfakes import Answer, Recorder
from .procs import free_port

pytestmark = pytest.mark.fast


@pytest.fixture
def target():
    recorder = Recorder()
    yield recorder
    recorder.close()


@pytest.mark.parametrize(
    'value, seconds',
    [
        ('120', 120.0),
        (' 3 ', 3.0),
        ('Thu, 26 Nov 2026 12:01:00 GMT', 60.0),
        ('Thu, 26 Nov 2026 11:00:00 GMT', 0.0),
        ('soon', None),
        ('', None),
        (None, None),
    ],
)
def test_parse_retry_after(value, seconds):
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
    assert delivery.parse_retry_after(value, now) == seconds


def test_event_auth_to_requests():
    headers = {}
    assert delivery.event_auth_to_requests({'type': 'basic', 'basic': {'username': 'u', 'password': 'p'}}, headers) == (
        'u',
        'p',
    )
    assert headers == {}
    assert (
        delivery.event_auth_to_requests({'type': 'header', 'header': {'type': 'Token', 'credentials': 'c'}}, headers)
        is None
    )
    assert headers == {'Authorization': 'Token c'}
    assert delivery.event_auth_to_requests({}, {}) is None


def test_with_extensions_merges_and_subscription_wins():
    event = {'id': 1, 'extensions': {'a': 1, 'b': 1}}
    assert delivery.with_extensions(event, {'b': 2, 'c': 3}) == {'id': 1, 'extensions': {'a': 1, 'b': 2, 'c': 3}}
    assert delivery.with_extensions({'id': 1}, {'c': 3}) == {'id': 1, 'extensions': {'c': 3}}
    assert delivery.with_extensions(event, {}) is event
    assert event == {'id': 1, 'extensions': {'a': 1, 'b': 1}}


def test_logged_body_is_bounded(target, configure):
    configure(MAX_LOGGED_BODY='10')
    target.script('/big', Answer(500, 'x' * 100000))
    reply = delivery.post_json(target.url + '/big', {'a': 1})
    assert (reply.status, reply.body, reply.code) == (500, 'x' * 10, '500')


def test_failures_become_replies(target, configure):
    configure(READ_TIMEOUT='0.3')
    target.script('/slow', Answer(200, delay=1))
    slow = delivery.post_json(target.url + '/slow', {})
    refused = delivery.post_json(f'http://127.0.0.1:{free_port()}/', {})
    assert (slow.status, slow.code) == (None, 'timeout')
    assert (refused.status, refused.code) == (None, 'unreachable')
    assert refused.describe().startswith('unreachable: ')


def test_describe_is_one_bounded_line():
    assert Reply(500, 'a\n  b\tc' + 'x' * 500).describe(limit=10) == 'answered 500: a b cxxxxx'
    assert Reply(204, '').describe() == 'answered 204'


def test_policy_question_names_the_user_safely(target):
    reply = delivery.ask_policy(target.url + '/', 'd m/b', {'eventType': 't'})
    assert reply.status == 200
    assert target.calls()[0].path == '/events/d%20m%2Fb'
