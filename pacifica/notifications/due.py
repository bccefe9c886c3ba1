"""Work is due until it is done: the one rule by which nothing accepted is lost.

Every unfinished piece of work has a **due time** in the log (``retry_at``):
an event not yet dispatched, and each match whose policy question or
delivery is not finished.  Whoever queues the next task for a piece of work
sets its due time to :func:`deadline`: when that task should have run, plus
``recover_after``.  The step that finishes the work clears it (due time
None).  So work past its due time is **overdue**: its task was lost on the
way (the broker was down, a worker died, the broker forgot).

The recovery sweep **claims** overdue work (:func:`claim_overdue`) and
queues it again; a claim is a conditional update, so any number of sweeping
processes claim each piece once.  A resync claims all unfinished work, due
or not (:func:`claim_all`).  Claimed work that cannot be queued is
**released**: due at once again (:func:`release`).

An event's work is **finished** when it and all its matches have no due
time (:func:`finished`); ``eventpurge`` keeps unfinished events and
``eventretry --wait`` waits for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from peewee import Case, Expression, fn

from .config import settings
from .models import INTERRUPTED, POLICY_SKIPPED, SENDING, EventLog, EventLogMatch, EventMatch, utcnow

#: A cutoff later than any due time.
EVERYTHING = datetime(9999, 1, 1)

#: Items claimed per table and batch.
BATCH = 1000

#: Below every uuid: where the first page of :func:`claim_all` starts.
ZERO_UUID = uuid.UUID(int=0)


def deadline(start_in: float = 0.0) -> datetime:
    """The due time of work queued now to start within ``start_in`` seconds."""
    return utcnow() + timedelta(seconds=settings().recover_after + start_in)


#: Seconds added to a hold for the outcome to be written.
HOLD_GRACE = 5.0


def held_for(seconds: float) -> datetime:
    """The due time of work this process is doing now and will finish within ``seconds``.

    No broker holds such work, only this process: should it die, the work is
    overdue as soon as it should have finished (not ``recover_after`` later).
    """
    return utcnow() + timedelta(seconds=seconds + HOLD_GRACE)


def in_flight(row: EventLogMatch, now: datetime) -> bool:
    """Whether a process holds this row's attempt now (claimed for sending, its hold not run out).

    No one else may take such a row, not even a task the broker gave again:
    a broker that lost its connection to a live worker gives its task again
    while the worker is still sending.  :func:`not_in_flight` says it in SQL.
    """
    return row.target_status_code == SENDING and row.retry_at is not None and row.retry_at > now


def not_in_flight(now: datetime) -> Expression:
    """SQL: the rows :func:`in_flight` is false of."""
    status, due = EventLogMatch.target_status_code, EventLogMatch.retry_at
    return (status != SENDING) | status.is_null() | due.is_null() | (due <= now)


def unheld(status: str | None) -> str | None:
    """The status an attempt had once its hold is over unanswered: ``sending`` becomes ``interrupted``.

    Whoever sets a row's due time again (a sweep, a retry, a new dispatch)
    ends any hold on it; left ``sending``, the new due time would read as a
    fresh hold and the task queued for the next attempt would find the row
    taken.  :func:`unheld_sql` says it in SQL.
    """
    return INTERRUPTED if status == SENDING else status


def unheld_sql() -> Case:
    """SQL: :func:`unheld` of each row's ``target_status_code``."""
    status = EventLogMatch.target_status_code
    return Case(None, [(status == SENDING, INTERRUPTED)], status)


def start_in(due: datetime | None, now: datetime) -> float:
    """Seconds until work with due time ``due`` was meant to start (the inverse of :func:`deadline`)."""
    if due is None:
        return 0.0
    return max(0.0, (due - now).total_seconds() - settings().recover_after)


def mark(rows: list, due: datetime | None, **fields: Any) -> None:
    """Set the due time of these log rows (None: their work is done), with any other ``fields``.

    Ends any hold on them (:func:`unheld`).
    """
    if rows:
        values = {'retry_at': due, 'target_status_code': unheld_sql(), **fields}
        EventLogMatch.update(**values).where(EventLogMatch.uuid.in_(rows)).execute()


def mark_event(event_uuid: object, due: datetime | None) -> None:
    """Set the due time of an event's dispatch (None: dispatched)."""
    EventLog.update(retry_at=due).where(EventLog.uuid == event_uuid).execute()


def finished() -> Expression:
    """SQL: the events whose work is finished (dispatched, and no match still due)."""
    busy = EventLogMatch.select(EventLogMatch.event_log).where(EventLogMatch.retry_at.is_null(False))
    return EventLog.retry_at.is_null() & EventLog.uuid.not_in(busy)


@dataclass
class Claimed:
    """Claimed work: events to dispatch, (event, user) policy questions, deliveries.

    ``wait`` holds, for work that should not start yet (a scheduled retry
    found by a resync), the seconds to wait, keyed by event uuid, policy
    question or delivery.  ``last`` is the last event and row uuid a page
    looked at (where :func:`claim_all` goes on).
    """

    events: list[str] = field(default_factory=list)
    asks: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    deliveries: list[tuple[str, int]] = field(default_factory=list)
    wait: dict[object, float] = field(default_factory=dict)
    last: tuple = field(default=(None, None), repr=False)

    def __bool__(self) -> bool:
        return bool(self.events or self.asks or self.deliveries)

    def describe(self) -> str:
        """Say what was claimed, for logs and the command line."""
        return (
            f'{len(self.events)} event(s) to dispatch, {len(self.asks)} policy question(s), '
            f'{len(self.deliveries)} deliveries'
        )

    def merge(self, other: Claimed) -> None:
        """Add another batch's work to this one."""
        self.events.extend(other.events)
        for key, rows in other.asks.items():
            self.asks.setdefault(key, []).extend(rows)
        self.deliveries.extend(other.deliveries)
        self.wait.update(other.wait)


def _claim(model: type[EventLog | EventLogMatch], key: object, due: datetime | None) -> bool:
    """Take one piece of work whose due time is still ``due`` (the value read): no one took it since."""
    values: dict[str, Any] = {'retry_at': deadline()}
    if model is EventLogMatch:
        values['target_status_code'] = unheld_sql()
    return model.update(**values).where((model.uuid == key) & (model.retry_at == due)).execute() == 1


def _claim_batch(cutoff: datetime, limit: int, after: tuple | None, keep_schedule: bool) -> Claimed:
    """Claim work due by ``cutoff``: by due time, or with ``after`` in uuid order from there.

    Rows whose work is over (delivered, or their subscription retired) are
    marked done rather than claimed.  Candidates are read in full before any
    claim, so no read stays open across the updates.
    """
    now = utcnow()
    claimed = Claimed()
    events = EventLog.select(EventLog.uuid, EventLog.retry_at).where(EventLog.retry_at <= cutoff)
    rows = EventLogMatch.select(EventLogMatch, EventMatch).join(EventMatch).where(EventLogMatch.retry_at <= cutoff)
    if after is None:
        events, rows = events.order_by(EventLog.retry_at), rows.order_by(EventLogMatch.retry_at)
    else:
        events = events.where(EventLog.uuid > after[0]).order_by(EventLog.uuid)
        rows = rows.where(EventLogMatch.uuid > after[1]).order_by(EventLogMatch.uuid)
    events_read, rows_read = list(events.limit(limit)), list(rows.limit(limit))
    for event in events_read:
        if _claim(EventLog, event.uuid, event.retry_at):
            claimed.events.append(str(event.uuid))
            if keep_schedule and start_in(event.retry_at, now):
                claimed.wait[str(event.uuid)] = start_in(event.retry_at, now)
    for row in rows_read:
        if row.is_delivered() or not row.event_match.is_live():
            mark([row.uuid], None)
        elif in_flight(row, now):
            continue  # a live process is sending it; should that process die, its hold runs out
        elif _claim(EventLogMatch, row.uuid, row.retry_at):
            key: object
            if row.policy_answered():
                claimed.deliveries.append((str(row.uuid), row.attempts + 1))
                key = claimed.deliveries[-1]
            else:
                key = (str(row.event_log_id), row.event_match.user)
                claimed.asks.setdefault(key, []).append(str(row.uuid))
            wait = start_in(row.retry_at, now) if keep_schedule else 0.0
            if wait:
                claimed.wait[key] = max(wait, claimed.wait.get(key, 0.0))
    claimed.last = (events_read[-1].uuid if events_read else None, rows_read[-1].uuid if rows_read else None)
    return claimed


def claim_overdue(cutoff: datetime | None = None, limit: int = BATCH) -> Claimed:
    """Claim (a batch of) the work overdue at ``cutoff`` (default now), most overdue first."""
    return _claim_batch(cutoff or utcnow(), limit, None, False)


def claim_all(keep_schedule: bool, page: int = BATCH) -> Iterator[Claimed]:
    """Claim all unfinished work, due or not, page by page, each piece once.

    For when the broker's copy of the queued work is gone (it restarted
    without its data) or an operator asks for everything now.  With
    ``keep_schedule``, work meant to start later says how long to wait.
    """
    after = (ZERO_UUID, ZERO_UUID)
    while True:
        claimed = _claim_batch(EVERYTHING, page, after, keep_schedule)
        yield claimed
        last_event, last_row = claimed.last
        if last_event is None and last_row is None:
            return
        after = (last_event or after[0], last_row or after[1])


def release(events: list[str], rows: list[str]) -> None:
    """Make claimed work due at once again, because it could not be queued."""
    now = utcnow()
    if events:
        EventLog.update(retry_at=now).where(EventLog.uuid.in_(events)).execute()
    mark(rows, now)


def backlog() -> dict[str, int]:
    """Unfinished work by stage: events still to match, policy questions still to ask, deliveries still to make."""
    code = fn.COALESCE(EventLogMatch.policy_status_code, '')
    answered = code.startswith('2') | (code == POLICY_SKIPPED)
    unfinished = EventLogMatch.select().where(EventLogMatch.retry_at.is_null(False))
    return {
        'dispatch': EventLog.select().where(EventLog.retry_at.is_null(False)).count(),
        'policy': unfinished.where(~answered).count(),
        'deliveries': unfinished.where(answered).count(),
    }


def oldest_unfinished(now: datetime | None = None) -> float | None:
    """Seconds since the oldest unfinished work came in (None when there is none)."""
    oldest = [
        model.select(fn.MIN(model.created)).where(model.retry_at.is_null(False)).scalar()
        for model in (EventLog, EventLogMatch)
    ]
    found = [when for when in oldest if when is not None]
    if not found:
        return None
    return max(0.0, ((now or utcnow()) - min(found)).total_seconds())
