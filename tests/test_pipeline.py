"""The pipeline's plain functions, run without a worker: idempotence, due times, the empty schedule."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from pacifica.notifications import due as due_module
from pacifica.notifications import intake, pipeline
from pacifica.notifications.matcher import matcher
from pacifica.notifications.models import POLICY_SKIPPED, SENDING
from pacifica.notifications.orm import EventLog, EventLogMatch, EventMatch, utcnow

from .conftest import FIXTURES
from .httpfakes import Answer, Recorder

pytestmark = pytest.mark.fast

EVENT = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))


def subscribe(target: Recorder, user: str = 'dmlb2001', path: str = '/t', jsonpath: str = 'data') -> EventMatch:
    return EventMatch.create(name='s', jsonpath=jsonpath, user=user, target_url=target.url + path)


def log_event(event: dict = EVENT) -> str:
    """Log an event as ``POST /receive`` does (due for dispatch), without queueing it."""
    return str(intake.store_event(event).event.uuid)


class Later:
    """A scheduler that records the work handed to it instead of queueing it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def ask_later(self, event_uuid: str, user: str, attempt: int, countdown: float) -> None:
        self.calls.append(('ask', event_uuid, user, attempt, countdown))

    def deliver_later(self, elm_uuid: str, attempt: int, countdown: float) -> None:
        self.calls.append(('deliver', elm_uuid, attempt, countdown))


@pytest.fixture
def later() -> Later:
    return Later()


def dispatch(event_uuid: str, later: Later, retake: bool = False) -> pipeline.Outcome:
    return pipeline.dispatch(event_uuid, later, retake)


def test_dispatch_twice_logs_each_pair_once(peers, later):
    policy, target = peers
    hit, _miss = subscribe(target), subscribe(target, jsonpath='$.nothing')
    event_uuid = log_event()
    assert dispatch(event_uuid, later).delivered == 1
    assert dispatch(event_uuid, later).matched == 0
    pipeline.redispatch(event_uuid)
    assert dispatch(event_uuid, later).matched == 0  # delivered already: nothing left to do
    assert [row.event_match_id for row in EventLogMatch.select()] == [hit.uuid]
    assert len(policy.calls()) == 1 and len(target.calls('/t')) == 1


def due(event_uuid: str) -> tuple:
    """The due times of the event and of its one log row (None: nothing left to do)."""
    rows = [row.retry_at for row in EventLogMatch.select().where(EventLogMatch.event_log == event_uuid)]
    return (EventLog.get_by_id(event_uuid).retry_at, *rows)


def test_an_events_whole_common_path_runs_in_one_call(peers, later):
    policy, target = peers
    for user in ('alice', 'bob'):
        subscribe(target, user=user, path=f'/{user}/1')
        subscribe(target, user=user, path=f'/{user}/2')
    event_uuid = log_event()
    assert due(event_uuid)[0] is not None
    outcome = dispatch(event_uuid, later)
    assert (outcome.matched, outcome.asked, outcome.delivered) == (4, 2, 4)
    assert sorted(call.path for call in policy.calls()) == ['/events/alice', '/events/bob']
    assert sorted(call.path for call in target.calls()) == ['/alice/1', '/alice/2', '/bob/1', '/bob/2']
    assert due(event_uuid) == (None, None, None, None, None) and later.calls == []


def test_a_denied_user_leaves_nothing_due(peers, later):
    policy, target = peers
    policy.script('/events/dmlb2001', Answer(412, 'no'))
    subscribe(target)
    event_uuid = log_event()
    assert dispatch(event_uuid, later).denied == 1
    assert due(event_uuid) == (None, None) and target.calls() == []


def test_a_scheduled_retry_is_due_after_its_delay(peers, configure, later):
    configure(RECOVER_AFTER='100')
    _policy, target = peers
    target.script('/t', Answer(503))
    subscribe(target)
    event_uuid = log_event()
    before = pipeline.utcnow()
    dispatch(event_uuid, later)
    ((kind, elm_uuid, attempt, countdown),) = later.calls
    assert (kind, attempt) == ('deliver', 2) and 0.9 <= countdown <= 1.1
    seconds = (due(event_uuid)[1] - before).total_seconds()
    assert 100.8 <= seconds <= 101.2 and elm_uuid == str(EventLogMatch.get().uuid)


def test_without_policy_server_the_policy_step_is_skipped(peers, configure, later):
    policy, target = peers
    configure(POLICY_URL=None)
    subscribe(target)
    outcome = dispatch(log_event(), later)
    (row,) = EventLogMatch.select()
    assert (outcome.asked, outcome.delivered) == (0, 1)
    assert row.policy_status_code == POLICY_SKIPPED
    assert policy.calls() == []


def test_an_attempt_runs_once_and_a_delivery_is_never_repeated(peers, later):
    _, target = peers
    subscribe(target)
    event_uuid = log_event()
    dispatch(event_uuid, later)
    row = EventLogMatch.get()
    pipeline.deliver_one(str(row.uuid), 1, later)
    pipeline.deliver_one(str(row.uuid), 2, later)
    assert len(target.calls('/t')) == 1


def test_a_taken_attempt_is_taken_over_only_by_a_redelivered_task_once_its_hold_ran_out(peers, later):
    _, target = peers
    subscribe(target)
    event_uuid = log_event()
    pipeline.dispatch_orm_event(EventLog.get_by_id(event_uuid))
    row = EventLogMatch.get()
    held = dict(attempts=1, target_status_code=SENDING, policy_status_code='200')
    EventLogMatch.update(**held, retry_at=utcnow() + timedelta(seconds=60)).execute()
    for retake in (False, True):
        pipeline.deliver_one(str(row.uuid), 1, later, retake=retake)
        pipeline.deliver_one(str(row.uuid), 2, later, retake=retake)
    assert target.calls('/t') == []  # its worker may still be sending it, though the broker gave its task again
    EventLogMatch.update(retry_at=utcnow() - timedelta(seconds=1)).execute()
    pipeline.deliver_one(str(row.uuid), 1, later)
    assert target.calls('/t') == []  # the attempt was taken: only a redelivered task resumes it
    pipeline.deliver_one(str(row.uuid), 1, later, retake=True)
    assert len(target.calls('/t')) == 1 and EventLogMatch.get().is_delivered()


def test_a_held_attempt_is_not_sent_again_by_a_policy_retry_or_resync(peers, later):
    """A resync can queue a policy question for rows that another task then claims and starts sending."""
    policy, target = peers
    subscribe(target)
    event_uuid = log_event()
    pipeline.dispatch_orm_event(EventLog.get_by_id(event_uuid))
    EventLogMatch.update(
        attempts=1, target_status_code=SENDING, policy_status_code='200', retry_at=utcnow() + timedelta(seconds=60)
    ).execute()
    outcome = pipeline.ask(event_uuid, 'dmlb2001', 1, later)
    assert (outcome.asked, target.calls('/t'), policy.calls()) == (0, [], [])
    assert EventLogMatch.get().target_status_code == SENDING


def test_policy_asked_only_about_undelivered_rows(peers, later):
    policy, target = peers
    subscribe(target)
    event_uuid = log_event()
    dispatch(event_uuid, later)
    assert pipeline.ask(event_uuid, 'dmlb2001', 1, later).asked == 0
    assert len(policy.calls()) == 1


@pytest.mark.parametrize('phase', ['policy', 'target'])
def test_empty_schedule_disables_on_the_first_failure(peers, configure, later, phase):
    policy, target = peers
    configure(RETRY_SCHEDULE='')
    sub = subscribe(target)
    (policy if phase == 'policy' else target).script(
        '/events/dmlb2001' if phase == 'policy' else '/t', Answer(500, 'down')
    )
    dispatch(log_event(), later)
    assert later.calls == []
    sub = EventMatch.get_by_id(sub.uuid)
    assert sub.disabled is not None
    assert sub.error.endswith('answered 500: down; gave up after 1 attempt(s)')


def test_policy_trouble_is_asked_again_on_the_schedule(peers, later):
    policy, target = peers
    policy.script('/events/dmlb2001', Answer(503), Answer())
    subscribe(target)
    event_uuid = log_event()
    dispatch(event_uuid, later)
    ((kind, *args),) = later.calls
    assert kind == 'ask' and args[:3] == [event_uuid, 'dmlb2001', 2]
    assert pipeline.ask(event_uuid, 'dmlb2001', 2, later).delivered == 1


def test_retry_is_offered_while_the_schedule_lasts(peers, later):
    _, target = peers
    target.script('/t', Answer(502))
    sub = subscribe(target)
    dispatch(log_event(), later)
    ((_, elm_uuid, attempt, countdown),) = later.calls
    assert attempt == 2 and 0.9 <= countdown <= 1.1
    pipeline.deliver_one(elm_uuid, 2, later)
    assert len(later.calls) == 1
    assert EventMatch.get_by_id(sub.uuid).error.endswith('gave up after 2 attempt(s)')


def test_a_busy_target_waits_its_turn_in_the_broker_and_others_are_not_held_up(peers, configure, later):
    _, target = peers
    configure(TARGET_CONCURRENCY='1')
    target.script('/slow', Answer(delay=2.0))
    slow = [subscribe(target, path='/slow') for _ in range(3)]
    fast = subscribe(target, path='/fast')
    outcome = dispatch(log_event(), later)
    assert (outcome.delivered, outcome.sending, outcome.deferred) == (1, 1, 2)
    assert len(target.calls('/fast')) == 1
    deferred = {call[1] for call in later.calls if call[0] == 'deliver'}
    slow_rows = {str(row.uuid) for row in EventLogMatch.select().where(EventLogMatch.event_match.in_(slow))}
    assert len(deferred) == 2 and deferred < slow_rows and fast


def test_deleted_disabled_and_unparsable_subscriptions_get_nothing(peers, later):
    _, target = peers
    live = subscribe(target, path='/live')
    EventMatch.update(deleted=EventMatch.created).where(
        EventMatch.uuid == subscribe(target, path='/deleted').uuid
    ).execute()
    EventMatch.update(disabled=EventMatch.created).where(
        EventMatch.uuid == subscribe(target, path='/disabled').uuid
    ).execute()
    subscribe(target, path='/broken', jsonpath='$[')
    dispatch(log_event(), later)
    assert [row.event_match_id for row in EventLogMatch.select()] == [live.uuid]


def test_redispatch_restarts_the_schedule_of_undelivered_rows(peers, later):
    _, target = peers
    target.script('/t', Answer(503))
    subscribe(target)
    event_uuid = log_event()
    dispatch(event_uuid, later)
    assert EventLogMatch.get().attempts == 1
    pipeline.redispatch(event_uuid)
    assert EventLogMatch.get().attempts == 0


def test_an_event_is_for_the_subscriptions_that_existed_when_it_arrived(peers, later):
    _, target = peers
    before = subscribe(target, path='/before')
    event_uuid = log_event()
    subscribe(target, path='/after')
    dispatch(event_uuid, later)
    assert [row.event_match_id for row in EventLogMatch.select()] == [before.uuid]


def test_a_subscription_removed_from_the_table_by_hand_is_dropped_from_the_copy(peers, later):
    _, target = peers
    gone = subscribe(target, path='/gone')
    matcher().current()  # this process's copy now holds it
    EventMatch.delete().where(EventMatch.uuid == gone.uuid).execute()  # not the API's soft delete
    subscribe(target, path='/kept')
    outcome = dispatch(log_event(), later)
    assert (outcome.matched, outcome.delivered) == (1, 1)
    assert [call.path for call in target.calls()] == ['/kept']


def sweep_and_deliver(event_uuid: str, later: Later) -> None:
    (row_uuid, attempt), *more = due_module.claim_overdue().deliveries
    assert more == []
    pipeline.deliver_one(row_uuid, attempt, later)


def redelivered_dispatch(event_uuid: str, later: Later) -> None:
    due_module.mark_event(event_uuid, utcnow())  # the dead worker had not finished the event
    dispatch(event_uuid, later, retake=True)


def retried_by_the_command_line(event_uuid: str, later: Later) -> None:
    pipeline.redispatch(event_uuid)
    dispatch(event_uuid, later)


@pytest.mark.parametrize('next_task', [sweep_and_deliver, redelivered_dispatch, retried_by_the_command_line])
def test_an_attempt_whose_worker_died_is_delivered_by_the_next_task_to_reach_it(peers, later, next_task):
    """A worker killed while sending leaves its attempt taken: once the hold runs out, whoever comes next sends it.

    Each of these sets a new due time; left ``sending``, the row would read as held again.
    """
    _, target = peers
    subscribe(target)
    event_uuid = log_event()
    pipeline.dispatch_orm_event(EventLog.get_by_id(event_uuid))
    due_module.mark_event(event_uuid, None)
    EventLogMatch.update(
        attempts=1, target_status_code=SENDING, policy_status_code='200', retry_at=utcnow() - timedelta(seconds=1)
    ).execute()
    next_task(event_uuid, later)
    assert len(target.calls('/t')) == 1 and EventLogMatch.get().is_delivered()
