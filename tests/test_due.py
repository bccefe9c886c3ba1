"""Due times and the recovery sweep, run without a worker: what is claimed, cleared, given back."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from pacifica.notifications import due, intake, pipeline
from pacifica.notifications.models import SENDING
from pacifica.notifications.orm import EventLog, EventLogMatch, EventMatch, utcnow
from pacifica.notifications.sweeper import Sweeper

from .conftest import FIXTURES, run_cmd
from .httpfakes import Answer
from .test_pipeline import Later

pytestmark = pytest.mark.fast

EVENT = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))


@pytest.fixture
def world(peers, configure):
    """The peers and one subscription; queued work is presumed lost after 60 s."""
    configure(RECOVER_AFTER='60')
    return EventMatch.create(name='s', jsonpath='data', user='dmlb2001', target_url=peers[1].url + '/t')


def overdue() -> None:
    """Let every due time pass, as if the queued tasks had been lost."""
    past = utcnow() - timedelta(seconds=1)
    EventLog.update(retry_at=past).where(EventLog.retry_at.is_null(False)).execute()
    EventLogMatch.update(retry_at=past).where(EventLogMatch.retry_at.is_null(False)).execute()


def log_event(**changes) -> str:
    return str(intake.store_event({**EVENT, **changes}).event.uuid)


def test_nothing_is_claimed_before_it_is_due(world):
    log_event()
    assert not due.claim_overdue()


def test_an_undispatched_event_is_claimed_once(world):
    event_uuid = log_event()
    overdue()
    assert due.claim_overdue().events == [event_uuid]
    assert not due.claim_overdue()
    overdue()
    assert due.claim_overdue().events == [event_uuid]


def test_concurrent_sweeps_share_out_the_work(world):
    uuids = {log_event(eventID=f'e{index}') for index in range(40)}
    overdue()
    cutoff, results = utcnow(), []
    sweepers = [threading.Thread(target=lambda: results.append(_sweep_in_thread(cutoff))) for _ in range(4)]
    for thread in sweepers:
        thread.start()
    for thread in sweepers:
        thread.join(30)
    claimed = [event for found in results for event in found]
    assert sorted(claimed) == sorted(uuids)


def _sweep_in_thread(cutoff) -> list[str]:
    """One sweeping process: its own connection."""
    EventLog._meta.database.connect(reuse_if_open=True)
    try:
        return due.claim_overdue(cutoff).events
    finally:
        EventLog._meta.database.close()


def matched(event_uuid: str) -> None:
    """Match an event and leave its rows due, as a worker that died before asking would."""
    rows = pipeline.dispatch_orm_event(EventLog.get_by_id(event_uuid))
    due.mark([row.uuid for user_rows in rows.values() for row in user_rows], due.deadline())
    due.mark_event(event_uuid, None)


def test_rows_resume_where_they_stopped(world):
    asked, allowed, delivered = (log_event(eventID=name) for name in ('asked', 'allowed', 'delivered'))
    for event_uuid in (asked, allowed, delivered):
        matched(event_uuid)
    rows = {str(row.event_log_id): row for row in EventLogMatch.select()}
    EventLogMatch.update(policy_status_code='200', attempts=2).where(
        EventLogMatch.event_log.in_([allowed, delivered])
    ).execute()
    EventLogMatch.update(target_status_code='200').where(EventLogMatch.event_log == delivered).execute()
    overdue()
    found = due.claim_overdue()
    assert found.asks == {(asked, 'dmlb2001'): [str(rows[asked].uuid)]}
    assert found.deliveries == [(str(rows[allowed].uuid), 3)]
    assert EventLogMatch.get(EventLogMatch.event_log == delivered).retry_at is None


def test_rows_of_retired_subscriptions_are_cleared(world):
    event_uuid = log_event()
    matched(event_uuid)
    EventMatch.update(disabled=utcnow()).execute()
    overdue()
    assert not due.claim_overdue()
    assert EventLogMatch.get().retry_at is None


def test_work_the_broker_refused_is_due_again_at_once(world, service_env):
    event_uuid = log_event()
    done = run_cmd({**service_env, 'BROKER_URL': 'redis://127.0.0.1:1/0'}, 'eventretry', '--pending')
    assert done.returncode == 1 and 'broker unavailable (nothing lost' in done.stderr, done.stderr
    assert EventLog.get_by_id(event_uuid).retry_at <= utcnow()


def test_sweeper_repeats_and_survives_a_failed_sweep():
    calls = []
    done = threading.Event()

    def sweep():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('database went away')
        if len(calls) == 3:
            done.set()

    sweeper = Sweeper(sweep)
    sweeper.start(0.01)
    thread = sweeper._thread
    try:
        assert done.wait(10)
    finally:
        sweeper.stop()
    assert not thread.is_alive()


def test_sweeper_resyncs_at_once_when_asked_and_again_after_a_failure(monkeypatch):
    monkeypatch.setattr('pacifica.notifications.sweeper.RESYNC_RETRY', 0.01)
    resyncs, done = [], threading.Event()

    def resync():
        resyncs.append(1)
        if len(resyncs) == 1:
            raise RuntimeError('broker went away again')
        done.set()

    sweeper = Sweeper(lambda: None, resync)
    sweeper.request_resync()
    sweeper.start(3600)
    try:
        assert done.wait(10)
    finally:
        sweeper.stop()
    assert len(resyncs) == 2


def test_claim_all_takes_every_piece_once_page_by_page(world):
    uuids = {log_event(eventID=f'e{index}') for index in range(7)}
    pages = list(due.claim_all(keep_schedule=False, page=3))
    claimed = [event for page in pages for event in page.events]
    assert sorted(claimed) == sorted(uuids) and len(pages) == 4


def test_a_resync_keeps_a_scheduled_retry_for_its_time(world):
    event_uuid = log_event()
    matched(event_uuid)
    (row,) = EventLogMatch.select()
    due.mark([row.uuid], due.deadline(120), policy_status_code='200')
    (claimed, *_rest) = [page for page in due.claim_all(keep_schedule=True) if page]
    key = (str(row.uuid), row.attempts + 1)
    assert claimed.deliveries == [key] and 119 <= claimed.wait[key] <= 120
    now = next(iter(due.claim_all(keep_schedule=False)))
    assert now.deliveries == [key] and not now.wait


def test_a_resync_leaves_alone_what_a_live_process_is_sending(world):
    """A broker restart loses queued work, not the work a worker is doing: resending it would send twice."""
    event_uuid = log_event()
    matched(event_uuid)
    (row,) = EventLogMatch.select()
    EventLogMatch.update(
        policy_status_code='200', attempts=1, target_status_code=SENDING, retry_at=due.held_for(30)
    ).execute()
    assert not any(page.deliveries for page in due.claim_all(keep_schedule=True))
    overdue()  # the hold ran out: its process is gone, the attempt is taken over
    found = due.claim_overdue()
    assert found.deliveries == [(str(row.uuid), 2)]


def finished_events() -> set[str]:
    return {str(event.uuid) for event in EventLog.select().where(due.finished())}


def test_an_event_is_finished_when_it_and_every_match_are_no_longer_due(world, peers):
    policy, _target = peers
    waiting, denied, delivering = (log_event(eventID=name) for name in ('waiting', 'denied', 'delivering'))
    assert finished_events() == set()  # not even dispatched: no match rows yet, still not finished
    policy.script('/events/dmlb2001', Answer(412, 'no'))
    pipeline.dispatch(denied, Later())
    matched(delivering)
    assert finished_events() == {denied}  # a denied match is finished
    assert waiting not in finished_events() and delivering not in finished_events()
