"""Queries over the event log: select, format and purge logged events.

Plain functions shared by the command line (and anything else) so that the
rules of what is shown and what may be deleted live in one place.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime

from peewee import ModelSelect

from . import due
from .binding import write_transaction
from .models import EventLog, EventLogMatch

#: The seed's date format for ``--start-date`` and friends.
DATE_FORMAT = '%Y-%m-%d %H:%M:%S'

#: Events deleted per transaction by :func:`purge_events`.
PURGE_BATCH = 500


class EventLogError(ValueError):
    """A request about the event log that cannot be answered as asked."""


def parse_uuids(values: Iterable[str]) -> list[uuid.UUID]:
    """Parse UUID strings, naming the first one that is not a UUID."""
    parsed = []
    for value in values:
        try:
            parsed.append(uuid.UUID(value))
        except ValueError:
            raise EventLogError(f'not a UUID: {value!r}') from None
    return parsed


def parse_date(value: str | None, date_format: str = DATE_FORMAT) -> datetime | None:
    """Parse a command line date in ``date_format`` (ISO 8601 is accepted too)."""
    if value is None:
        return None
    try:
        return datetime.strptime(value, date_format)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise EventLogError(f'bad date {value!r}: expected the format {date_format!r}') from None


def require_known(uuids: list[uuid.UUID]) -> None:
    """Raise naming the UUIDs that are not in the event log."""
    found = {row.uuid for row in EventLog.select(EventLog.uuid).where(EventLog.uuid.in_(uuids))}
    missing = [str(value) for value in uuids if value not in found]
    if missing:
        raise EventLogError(f'no such event: {", ".join(missing)}')


def select_events(
    uuids: list[uuid.UUID] | None = None,
    limit: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Iterator[EventLog]:
    """Yield logged events, oldest first, filtered by uuid and creation time."""
    if start and end and start > end:
        raise EventLogError(f'start date {start} is after end date {end}')
    if limit is not None and limit < 1:
        raise EventLogError('limit must be at least 1')
    query = EventLog.select().order_by(EventLog.created, EventLog.uuid)
    if uuids:
        require_known(uuids)
        query = query.where(EventLog.uuid.in_(uuids))
    if start:
        query = query.where(EventLog.created >= start)
    if end:
        query = query.where(EventLog.created <= end)
    if limit:
        query = query.limit(limit)
    yield from query


def wait_finished(uuids: list[uuid.UUID], timeout: float, interval: float = 0.2) -> list[EventLog]:
    """Wait until these events' work is finished (see :mod:`due`), or ``timeout`` passes; return them."""
    deadline = time.monotonic() + timeout
    query = EventLog.select().where(EventLog.uuid.in_(uuids))
    while query.where(~due.finished()).exists() and time.monotonic() < deadline:
        time.sleep(interval)
    return list(query.order_by(EventLog.created, EventLog.uuid))


def _code(value: str | None) -> str:
    return '-' if value is None else value


def format_event(event: EventLog) -> str:
    """Render one event and its match lines in the seed's ``eventget`` format."""
    lines = [f'Event - {event.uuid}', json.dumps(json.loads(event.jsondata), ensure_ascii=False)]
    matches = event.event_matches.order_by(EventLogMatch.created, EventLogMatch.uuid)
    for match in matches:
        lines.append(
            f'    ELM {match.event_match_id} ({match.created.isoformat()}) '
            f'policy {_code(match.policy_status_code)} target {_code(match.target_status_code)}'
        )
    return '\n'.join(lines)


def _purge_query(uuids: list[uuid.UUID] | None, older_than: datetime | None) -> ModelSelect[EventLog]:
    query = EventLog.select(EventLog.uuid)
    if uuids:
        query = query.where(EventLog.uuid.in_(uuids))
    if older_than is not None:
        query = query.where(EventLog.created < older_than)
    return query


def count_unfinished(uuids: list[uuid.UUID] | None = None, older_than: datetime | None = None) -> int:
    """How many of the events a purge names it must keep, their work not finished."""
    return _purge_query(uuids, older_than).where(~due.finished()).count()


def purge_events(
    uuids: list[uuid.UUID] | None = None,
    older_than: datetime | None = None,
    limit: int | None = None,
    batch: int = PURGE_BATCH,
) -> int:
    """Delete events and their match rows, oldest first; return how many events went.

    At least one of ``uuids`` and ``older_than`` is required, so that a bare
    command never empties the log.  Events whose work is not finished are kept.  Each batch is one transaction.
    """
    if not uuids and older_than is None:
        raise EventLogError('name the events to purge: UUIDs or --older-than-date')
    if limit is not None and limit < 1:
        raise EventLogError('limit must be at least 1')
    if uuids:
        require_known(uuids)
    deleted = 0
    while limit is None or deleted < limit:
        size = batch if limit is None else min(batch, limit - deleted)
        query = (
            _purge_query(uuids, older_than).where(due.finished()).order_by(EventLog.created, EventLog.uuid).limit(size)
        )
        with write_transaction():
            ids = [row.uuid for row in query]
            if not ids:
                break
            EventLogMatch.delete().where(EventLogMatch.event_log.in_(ids)).execute()
            EventLog.delete().where(EventLog.uuid.in_(ids)).execute()
        deleted += len(ids)
    return deleted
