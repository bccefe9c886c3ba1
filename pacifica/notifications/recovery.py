"""The recovery sweep: find work whose queued task never ran, and claim it for queueing again.

Every piece of unfinished work carries a due time (``retry_at``) in the
database: an event not yet matched, and each delivery not yet finished.  The
step that queues the next task pushes the due time past the moment that task
should have run, and the step that finishes the work clears it.  Work still
due after ``recover_after`` seconds was lost on the way (a broker outage, a
killed worker, a restarted broker) and the sweep queues it again.  Claims are
conditional updates, so any number of sweeping processes queue each piece of
work once.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from .config import get_number
from .orm import EventLog, EventLogMatch, EventMatch, utcnow
from .pipeline import POLICY_SKIPPED, lease, policy_url, recover_after, set_due

#: A cutoff later than any due time: claim all unfinished work, due or not.
EVERYTHING = datetime(9999, 1, 1)

#: Items claimed per table and sweep; the rest wait for the next sweep.
SWEEP_LIMIT = 1000

#: Below every uuid: where a resync's first page starts.
ZERO_UUID = uuid.UUID(int=0)


@dataclass
class Found:
    """Claimed work: events to dispatch, (event, user) policy questions, deliveries.

    ``wait`` holds, for work that should not start yet (a scheduled retry
    found by a resync), the seconds to wait, keyed by event uuid, policy
    question or delivery.
    """

    events: list[str] = field(default_factory=list)
    asks: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    deliveries: list[tuple[str, int]] = field(default_factory=list)
    wait: dict[object, float] = field(default_factory=dict)
    #: The last event and row uuids this batch looked at (where a resync's next page starts).
    last: tuple = field(default=(None, None), repr=False)

    def __bool__(self) -> bool:
        return bool(self.events or self.asks or self.deliveries)

    def __len__(self) -> int:
        return len(self.events) + sum(len(rows) for rows in self.asks.values()) + len(self.deliveries)

    def describe(self) -> str:
        """Say what was found, for logs and the command line."""
        return (f'{len(self.events)} event(s) to dispatch, {len(self.asks)} policy question(s), '
                f'{len(self.deliveries)} deliveries')

    def merge(self, other: Found) -> None:
        """Add another batch's work to this one."""
        self.events.extend(other.events)
        for key, rows in other.asks.items():
            self.asks.setdefault(key, []).extend(rows)
        self.deliveries.extend(other.deliveries)
        self.wait.update(other.wait)


def sweep_interval() -> float:
    """Seconds between two sweeps of one process."""
    return float(get_number('notifications', 'sweep_interval', float))


def _claim(model, key, when: datetime) -> bool:
    """Lease one row whose due time is still ``when`` (the value read): no one claimed it since."""
    return model.update(retry_at=lease()).where((model.uuid == key) & (model.retry_at == when)).execute() == 1


def _policy_answered(row: EventLogMatch) -> bool:
    code = row.policy_status_code or ''
    return code.startswith('2') or (code == POLICY_SKIPPED and not policy_url())


def _start_in(retry_at: datetime, now: datetime) -> float:
    """Seconds until work due at ``retry_at`` was meant to start (its due time less the lease)."""
    return max(0.0, (retry_at - now).total_seconds() - recover_after())


def sweep(cutoff: datetime | None = None, limit: int = SWEEP_LIMIT, after: tuple | None = None,
          keep_schedule: bool = False) -> Found:
    """Claim the work due by ``cutoff`` (default now) and say how to queue it again.

    Rows whose work is over (delivered, or their subscription deleted or
    disabled) are cleared rather than claimed.  Candidates are read in full
    before any claim, so no read stays open across the updates.  With
    ``after`` (the last event and row uuids of the previous page, see
    :func:`resync`) rows are taken in uuid order from there, each once.
    With ``keep_schedule``, work meant to start later (a scheduled retry)
    says how long to wait.
    """
    now = utcnow()
    cutoff = cutoff or now
    found = Found()
    events = EventLog.select(EventLog.uuid, EventLog.retry_at).where(EventLog.retry_at <= cutoff)
    rows = (EventLogMatch.select(EventLogMatch, EventMatch).join(EventMatch)
            .where(EventLogMatch.retry_at <= cutoff))
    if after is None:
        events, rows = events.order_by(EventLog.retry_at), rows.order_by(EventLogMatch.retry_at)
    else:
        events = events.where(EventLog.uuid > after[0]).order_by(EventLog.uuid)
        rows = rows.where(EventLogMatch.uuid > after[1]).order_by(EventLogMatch.uuid)
    events, rows = list(events.limit(limit)), list(rows.limit(limit))
    for event in events:
        if _claim(EventLog, event.uuid, event.retry_at):
            found.events.append(str(event.uuid))
            if keep_schedule and _start_in(event.retry_at, now):
                found.wait[str(event.uuid)] = _start_in(event.retry_at, now)
    for row in rows:
        sub = row.event_match
        if row.is_delivered() or not sub.is_live():
            set_due([row.uuid], None)
        elif _claim(EventLogMatch, row.uuid, row.retry_at):
            wait = _start_in(row.retry_at, now) if keep_schedule else 0.0
            if _policy_answered(row):
                found.deliveries.append((str(row.uuid), row.attempts + 1))
                key: object = found.deliveries[-1]
            else:
                key = (str(row.event_log_id), sub.user)
                found.asks.setdefault(key, []).append(str(row.uuid))
            if wait:
                found.wait[key] = max(wait, found.wait.get(key, 0.0))
    found.last = (events[-1].uuid if events else None, rows[-1].uuid if rows else None)
    return found


def resync(keep_schedule: bool, page: int = SWEEP_LIMIT) -> Iterator[Found]:
    """Claim all unfinished work, due or not, page by page, each piece once.

    For when the broker's copy of the queued work is gone (it restarted
    without its data) or an operator asks for everything now.  With
    ``keep_schedule``, work meant to start later keeps its start time.
    """
    after = (ZERO_UUID, ZERO_UUID)
    while True:
        found = sweep(EVERYTHING, page, after, keep_schedule)
        yield found
        last_event, last_row = found.last
        if last_event is None and last_row is None:
            return
        after = (last_event or after[0], last_row or after[1])


def release(events: list[str], rows: list[str]) -> None:
    """Make claimed work due at once again, because it could not be queued."""
    now = utcnow()
    if events:
        EventLog.update(retry_at=now).where(EventLog.uuid.in_(events)).execute()
    set_due(rows, now)
