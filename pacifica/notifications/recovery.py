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

from dataclasses import dataclass, field
from datetime import datetime

from .config import get_number
from .orm import EventLog, EventLogMatch, EventMatch, utcnow
from .pipeline import POLICY_SKIPPED, lease, policy_url, set_due

#: A cutoff later than any due time: claim all unfinished work, due or not.
EVERYTHING = datetime(9999, 1, 1)

#: Items claimed per table and sweep; the rest wait for the next sweep.
SWEEP_LIMIT = 1000


@dataclass
class Found:
    """Claimed work: events to dispatch, (event, user) policy questions, deliveries."""

    events: list[str] = field(default_factory=list)
    asks: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    deliveries: list[tuple[str, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.asks or self.deliveries)

    def describe(self) -> str:
        """Say what was found, for logs and the command line."""
        return (f'{len(self.events)} event(s) to dispatch, {len(self.asks)} policy question(s), '
                f'{len(self.deliveries)} deliveries')


def sweep_interval() -> float:
    """Seconds between two sweeps of one process."""
    return float(get_number('notifications', 'sweep_interval', float))


def _claim(model, key, cutoff: datetime) -> bool:
    return model.update(retry_at=lease()).where(
        (model.uuid == key) & (model.retry_at <= cutoff)).execute() == 1


def _policy_answered(row: EventLogMatch) -> bool:
    code = row.policy_status_code or ''
    return code.startswith('2') or (code == POLICY_SKIPPED and not policy_url())


def sweep(cutoff: datetime | None = None, limit: int = SWEEP_LIMIT) -> Found:
    """Claim the work due by ``cutoff`` (default now) and say how to queue it again.

    Rows whose work is over (delivered, or their subscription deleted or
    disabled) are cleared rather than claimed.  Candidates are read in full
    before any claim, so no read stays open across the updates.
    """
    cutoff = cutoff or utcnow()
    found = Found()
    events = list(EventLog.select(EventLog.uuid).where(EventLog.retry_at <= cutoff).order_by(
        EventLog.retry_at).limit(limit))
    found.events = [str(event.uuid) for event in events if _claim(EventLog, event.uuid, cutoff)]
    rows = list(EventLogMatch.select(EventLogMatch, EventMatch).join(EventMatch)
                .where(EventLogMatch.retry_at <= cutoff).order_by(EventLogMatch.retry_at).limit(limit))
    for row in rows:
        sub = row.event_match
        if row.is_delivered() or not sub.is_live():
            set_due([row.uuid], None)
        elif _claim(EventLogMatch, row.uuid, cutoff):
            if _policy_answered(row):
                found.deliveries.append((str(row.uuid), row.attempts + 1))
            else:
                found.asks.setdefault((str(row.event_log_id), sub.user), []).append(str(row.uuid))
    return found


def release(events: list[str], rows: list[str]) -> None:
    """Make claimed work due at once again, because it could not be queued."""
    now = utcnow()
    if events:
        EventLog.update(retry_at=now).where(EventLog.uuid.in_(events)).execute()
    set_due(rows, now)
