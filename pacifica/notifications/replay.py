"""Replay: send one subscription, again, the events of a span of time it matches but has not received.

Events that arrived while it was disabled, or before it existed, count too:
every event received in the span is matched against its jsonpath, and each
match it has no delivered row for is made due and queued, to be asked of the
policy server (when one is configured) and delivered as usual.  A replay is
under way until its work is finished; one more is refused (409) meanwhile.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from peewee import SqliteDatabase

from . import due, jsonpath
from .binding import DB, write_transaction
from .bodies import Checker
from .config import settings
from .errors import ClientError, Conflict
from .models import POLICY_SKIPPED, EventLog, EventLogMatch, EventMatch, utcnow

LOG = logging.getLogger(__name__)

#: Events read from the log at a time.
BATCH = 500


#: What ``POST /eventmatch/<uuid>/replay`` takes; the dates' sense is checked by :func:`window`.
SCHEMA = {
    'type': 'object',
    'properties': {
        'since': {'type': 'string', 'format': 'date-time'},
        'until': {'type': ['string', 'null'], 'format': 'date-time', 'description': 'Null or left out: now.'},
    },
    'required': ['since'],
    'additionalProperties': False,
}

_CHECKER = Checker(SCHEMA)


def _when(body: dict, key: str) -> datetime | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace('Z', '+00:00').replace('z', '+00:00'))
        if parsed.tzinfo is not None:  # the log keeps UTC without a zone; a time without one is taken as UTC
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):  # OverflowError: a zone that moves it past year 1 or 9999
        raise ClientError(f'{key}: {value[:60]!r} is not an ISO 8601 date and time (from year 1 to 9999)') from None
    return parsed


def window(body: Any, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The span a replay body asks for, checked: ``since`` required, ``until`` (default now) after it, not too long."""
    _CHECKER.check(body)
    since = _when(body, 'since')
    assert since is not None  # required by the schema
    until = _when(body, 'until') or now or utcnow()
    if until <= since:
        raise ClientError('until must be later than since')
    longest = settings().replay_window
    if (until - since).total_seconds() > longest:
        raise ClientError(f'a replay spans at most {timedelta(seconds=longest)} (replay_window)')
    return since, until


def replay(sub: EventMatch, body: Any) -> tuple[int, list[tuple[str, str]]]:
    """Make due this subscription's undelivered matches of the span; return how many, and the work to queue.

    The work is (event uuid, row uuid) pairs; :func:`queue` sends them once
    this transaction is committed.
    """
    since, until = window(body)
    check = jsonpath.predicate(sub.jsonpath)
    with write_transaction():
        _lock(sub)
        if sub.disabled is not None:
            raise Conflict('the subscription is disabled: re-enable it (PUT "disabled": null) before a replay')
        if EventLogMatch.select().where(_unfinished(sub)).exists():
            raise Conflict('a replay (or other work) for this subscription is still under way; try when it is done')
        rows = {
            row.event_log_id: row
            for row in EventLogMatch.select()
            .join(EventLog)
            .where((EventLogMatch.event_match == sub.uuid) & (EventLog.created >= since) & (EventLog.created < until))
        }
        work = []
        for event_uuid, text in _events(since, until):
            row = rows.get(event_uuid)
            if (row is not None and row.is_delivered()) or not check(json.loads(text)):
                continue
            work.append((str(event_uuid), str(_make_due(sub, event_uuid, row))))
    LOG.info('replay of subscription %s from %s to %s: %d event(s)', sub.uuid, since, until, len(work))
    return len(work), work


def _lock(sub: EventMatch) -> None:
    """Hold the subscription's row until the transaction ends, so that two replays take turns."""
    if not isinstance(DB.bound(), SqliteDatabase):  # SQLite's write transaction is a lock already
        EventMatch.select(EventMatch.uuid).where(EventMatch.uuid == sub.uuid).for_update().execute()


def _unfinished(sub: EventMatch) -> Any:
    return (EventLogMatch.event_match == sub.uuid) & EventLogMatch.retry_at.is_null(False)


def _events(since: datetime, until: datetime) -> Iterator[tuple[uuid.UUID, str]]:
    """(uuid, text) of every event received in the span, oldest first, a batch at a time."""
    query = (
        EventLog.select(EventLog.uuid, EventLog.jsondata, EventLog.created)
        .where((EventLog.created >= since) & (EventLog.created < until))
        .order_by(EventLog.created, EventLog.uuid)
    )
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        page = query
        if after is not None:
            page = page.where(
                (EventLog.created > after[0]) | ((EventLog.created == after[0]) & (EventLog.uuid > after[1]))
            )
        batch = list(page.limit(BATCH))
        for event in batch:
            yield event.uuid, event.jsondata
        if len(batch) < BATCH:
            return
        after = (batch[-1].created, batch[-1].uuid)


def _make_due(sub: EventMatch, event_uuid: uuid.UUID, row: EventLogMatch | None) -> uuid.UUID:
    """The subscription's row for the event, due now with a fresh retry schedule (made if there is none)."""
    policy = {} if settings().policy_url else {'policy_status_code': POLICY_SKIPPED}
    if row is None:
        return EventLogMatch.create(
            event_log=event_uuid, event_match=sub.uuid, created=utcnow(), retry_at=due.deadline(), **policy
        ).uuid
    due.mark([row.uuid], due.deadline(), attempts=0, **policy)
    return row.uuid


def queue(user: str, work: list[tuple[str, str]]) -> None:
    """Queue replayed work: a policy question per event, or the delivery itself when no policy server is set.

    What cannot be queued (the broker is down) stays due: the recovery sweep queues it.
    """
    from .tasks import query_policy, route_event

    try:
        for event_uuid, row_uuid in work:
            if settings().policy_url:
                query_policy.delay(event_uuid, user, 1)
            else:
                route_event.delay(row_uuid, 1)
    except Exception as exc:  # noqa: BLE001 - whatever the broker client raises; the rows stay due
        LOG.warning('replayed work not all queued (it stays due, for the sweep): %r', exc)
