"""The pipeline's plain functions, run without a worker: idempotence, due times, the empty schedule."""

from __future__ import annotations

import json

import pytest

from pacifica.notifications import intake, pipeline
from pacifica.notifications.models import POLICY_SKIPPED
from pacifica.notifications.orm import EventLog, EventLogMatch, EventMatch

from .conftest import FIXTURES
from .httpfakes import Answer, Recorder

pytestmark = pytest.mark.fast

EVENT = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))


def subscribe(target: Recorder, user: str = 'dmlb2001', path: str = '/t', jsonpath: str = 'data') -> EventMatch:
    return EventMatch.create(name='s', jsonpath=jsonpath, user=user, target_url=target.url + path)


def log_event(event: dict = EVENT) -> str:
    """Log an event as ``POST /receive`` does (due for dispatch), without queueing it."""
    return str(intake.store_event(event).event.uuid)


def test_dispatch_twice_logs_each_pair_once(peers):
    _, target = peers
    hit, _miss = subscribe(target), subscribe(target, jsonpath='$.nothing')
    event_uuid = log_event()
    assert pipeline.dispatch(event_uuid).ask == ['dmlb2001']
    assert pipeline.dispatch(event_uuid).ask == []
    pipeline.redispatch(event_uuid)
    assert pipeline.dispatch(event_uuid).ask == ['dmlb2001']
    assert [row.event_match_id for row in EventLogMatch.select()] == [hit.uuid]


def due(event_uuid: str) -> tuple:
    """The due times of the event and of its one log row (None: nothing left to do)."""
    rows = [row.retry_at for row in EventLogMatch.select().where(EventLogMatch.event_log == event_uuid)]
    return (EventLog.get_by_id(event_uuid).retry_at, *rows)


def test_work_is_due_until_it_is_done(peers):
    _, target = peers
    subscribe(target)
    event_uuid = log_event()
    assert due(event_uuid)[0] is not None
    pipeline.dispatch(event_uuid)
    event_due, row_due = due(event_uuid)
    assert event_due is None and row_due is not None
    (delivery,) = pipeline.query_policy(event_uuid, 'dmlb2001').deliver
    assert due(event_uuid)[1] is not None
    pipeline.route_event(*delivery)
    assert due(event_uuid) == (None, None)


def test_a_denied_user_leaves_nothing_due(peers):
    policy, target = peers
    policy.script('/events/dmlb2001', Answer(412, 'no'))
    subscribe(target)
    event_uuid = log_event()
    pipeline.dispatch(event_uuid)
    assert pipeline.query_policy(event_uuid, 'dmlb2001').deliver == []
    assert due(event_uuid) == (None, None)


def test_a_scheduled_retry_is_due_after_its_delay(peers, configure):
    configure(RECOVER_AFTER='100')
    event_uuid, delivery = allowed_delivery(peers[1], Answer(503))
    before = pipeline.utcnow()
    assert pipeline.route_event(*delivery).retry_in is not None
    seconds = (due(event_uuid)[1] - before).total_seconds()
    assert 100.8 <= seconds <= 101.2


def test_without_policy_server_the_policy_step_is_skipped(peers, configure):
    policy, target = peers
    configure(POLICY_URL=None)
    subscribe(target)
    work = pipeline.dispatch(log_event())
    (row,) = EventLogMatch.select()
    assert work.ask == [] and work.deliver == [(str(row.uuid), 1)]
    assert row.policy_status_code == POLICY_SKIPPED
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
def test_empty_schedule_disables_on_the_first_failure(peers, configure, phase):
    policy, target = peers
    configure(RETRY_SCHEDULE='')
    sub = subscribe(target)
    (policy if phase == 'policy' else target).script(
        '/events/dmlb2001' if phase == 'policy' else '/t', Answer(500, 'down')
    )
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
        EventMatch.uuid == subscribe(target, path='/deleted').uuid
    ).execute()
    EventMatch.update(disabled=EventMatch.created).where(
        EventMatch.uuid == subscribe(target, path='/disabled').uuid
    ).execute()
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


def test_an_event_is_for_the_subscriptions_that_existed_when_it_arrived(peers):
    _, target = peers
    before = subscribe(target, path='/before')
    event_uuid = log_event()
    subscribe(target, path='/after')
    pipeline.dispatch(event_uuid)
    assert [row.event_match_id for row in EventLogMatch.select()] == [before.uuid]
