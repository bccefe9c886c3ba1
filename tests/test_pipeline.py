"""The pipeline's plain functions, run without a worker: idempotence and the empty schedule."""
from __future__ import annotations

import json

import pytest

from pacifica.notifications import pipeline
from pacifica.notifications.config import get_config
from pacifica.notifications.orm import EventLog, EventLogMatch, EventMatch

from .conftest import FIXTURES
from .httpfakes import Answer, Recorder

EVENT = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))


@pytest.fixture
def peers(synced, monkeypatch):
    """A policy server and a target server; the policy URL configured."""
    policy, target = Recorder(), Recorder()
    monkeypatch.setenv('POLICY_URL', policy.url)
    monkeypatch.setenv('RETRY_SCHEDULE', '1')
    get_config.cache_clear()
    yield policy, target
    policy.close()
    target.close()
    get_config.cache_clear()


def subscribe(target: Recorder, user: str = 'dmlb2001', path: str = '/t', jsonpath: str = 'data') -> EventMatch:
    return EventMatch.create(name='s', jsonpath=jsonpath, user=user, target_url=target.url + path)


def log_event(event: dict = EVENT) -> str:
    return str(EventLog.create(jsondata=json.dumps(event)).uuid)


def test_dispatch_twice_logs_each_pair_once(peers):
    _, target = peers
    hit, _miss = subscribe(target), subscribe(target, jsonpath='$.nothing')
    event_uuid = log_event()
    assert pipeline.dispatch(event_uuid).ask == ['dmlb2001']
    assert pipeline.dispatch(event_uuid).ask == ['dmlb2001']
    assert [row.event_match_id for row in EventLogMatch.select()] == [hit.uuid]


def test_without_policy_server_the_policy_step_is_skipped(peers, monkeypatch):
    policy, target = peers
    monkeypatch.delenv('POLICY_URL')
    get_config.cache_clear()
    subscribe(target)
    work = pipeline.dispatch(log_event())
    (row,) = EventLogMatch.select()
    assert work.ask == [] and work.deliver == [(str(row.uuid), 1)]
    assert row.policy_status_code == pipeline.POLICY_SKIPPED
    assert policy.calls() == []


def test_an_attempt_runs_once_and_a_delivery_is_never_repeated(peers):
    _, target = peers
    subscribe(target)
    event_uuid = log_event()
    pipeline.dispatch(event_uuid)
    (delivery,) = pipeline.query_policy(event_uuid, 'dmlb2001').deliver
    pipeline.route_event(*delivery)
    pipeline.route_event(*delivery)
    pipeline.route_event(delivery[0], 2)
    assert len(target.calls('/t')) == 1
    assert pipeline.dispatch(event_uuid).ask == []


def test_policy_asked_only_about_undelivered_rows(peers):
    policy, target = peers
    subscribe(target)
    event_uuid = log_event()
    pipeline.dispatch(event_uuid)
    pipeline.route_event(*pipeline.query_policy(event_uuid, 'dmlb2001').deliver[0])
    assert pipeline.query_policy(event_uuid, 'dmlb2001').deliver == []
    assert len(policy.calls()) == 1


@pytest.mark.parametrize('phase', ['policy', 'target'])
def test_empty_schedule_disables_on_the_first_failure(peers, monkeypatch, phase):
    policy, target = peers
    monkeypatch.setenv('RETRY_SCHEDULE', '')
    get_config.cache_clear()
    sub = subscribe(target)
    (policy if phase == 'policy' else target).script(
        '/events/dmlb2001' if phase == 'policy' else '/t', Answer(500, 'down'))
    event_uuid = log_event()
    pipeline.dispatch(event_uuid)
    work = pipeline.query_policy(event_uuid, 'dmlb2001')
    if phase == 'target':
        work = pipeline.route_event(*work.deliver[0])
    assert work.retry_in is None and work.deliver == []
    sub = EventMatch.get_by_id(sub.uuid)
    assert sub.disabled is not None
    assert sub.error.endswith('answered 500: down; gave up after 1 attempt(s)')


def allowed_delivery(target: Recorder, answer: Answer) -> tuple[str, tuple[str, int]]:
    """Log an event for one subscription whose target gives ``answer``; return it and its delivery."""
    target.script('/t', answer)
    subscribe(target)
    event_uuid = log_event()
    pipeline.dispatch(event_uuid)
    return event_uuid, pipeline.query_policy(event_uuid, 'dmlb2001').deliver[0]


def test_retry_is_offered_while_the_schedule_lasts(peers):
    _, delivery = allowed_delivery(peers[1], Answer(502))
    assert 0.9 <= pipeline.route_event(*delivery).retry_in <= 1.1
    assert pipeline.route_event(delivery[0], 2).retry_in is None


def test_deleted_disabled_and_unparsable_subscriptions_get_nothing(peers):
    _, target = peers
    live = subscribe(target, path='/live')
    EventMatch.update(deleted=EventMatch.created).where(
        EventMatch.uuid == subscribe(target, path='/deleted').uuid).execute()
    EventMatch.update(disabled=EventMatch.created).where(
        EventMatch.uuid == subscribe(target, path='/disabled').uuid).execute()
    subscribe(target, path='/broken', jsonpath='$[')
    event_uuid = log_event()
    pipeline.dispatch(event_uuid)
    assert [row.event_match_id for row in EventLogMatch.select()] == [live.uuid]


def test_redispatch_restarts_the_schedule_of_undelivered_rows(peers):
    event_uuid, delivery = allowed_delivery(peers[1], Answer(503))
    pipeline.route_event(*delivery)
    assert EventLogMatch.get().attempts == 1
    pipeline.redispatch(event_uuid)
    assert EventLogMatch.get().attempts == 0
