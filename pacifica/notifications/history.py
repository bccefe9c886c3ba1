"""What a subscriber may see of the log: its deliveries, page by page, and the events that matched it.

Nothing here knows about HTTP; a request that cannot be answered as asked
raises :class:`ClientError`.  Pages run newest first, by when the event was
received, and the cursor that asks for the next one is opaque to clients
(the last entry's time and row, base64-encoded).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from peewee import ModelSelect

from .errors import ClientError, NotVisible
from .intake import event_id
from .models import DELIVERY_STATES, EventLog, EventLogMatch, EventMatch

#: Entries a page holds unless asked otherwise, and at most.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def entry(row: EventLogMatch, event: dict | None = None) -> dict:
    """One delivery as its subscriber sees it (``row`` joined to its event)."""
    state = row.state()
    if event is None:
        event = json.loads(row.event_log.jsondata)
    ident = event_id(event)
    return {
        'event_uuid': str(row.event_log.uuid),
        'event_id': ident if ident is None or isinstance(ident, (str, int, float, bool)) else json.dumps(ident),
        'received': _iso(row.event_log.created),
        'state': state,
        'attempts': row.attempts,
        'last_attempt': _iso(row.last_attempt),
        'next_attempt': _iso(row.retry_at) if state == 'pending' else None,
        'policy_status_code': row.policy_status_code,
        'target_status_code': row.target_status_code,
        'target_resp_body': row.target_resp_body,
    }


def _cursor(row: EventLogMatch) -> str:
    text = json.dumps([row.event_log.created.isoformat(), str(row.uuid)])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip('=')


def _read_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, row = json.loads(base64.urlsafe_b64decode(cursor + '=' * (-len(cursor) % 4)))
        return datetime.fromisoformat(created), uuid.UUID(row)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ClientError(f'before: {cursor[:80]!r} is not a cursor this service gave') from None


def parse_limit(value: str | None) -> int:
    """The ``limit`` query parameter: 1 to :data:`MAX_LIMIT`, :data:`DEFAULT_LIMIT` when absent."""
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise ClientError(f'limit: expected a whole number from 1 to {MAX_LIMIT}, not {value[:40]!r}')
    return int(value)


def _joined() -> ModelSelect[EventLogMatch]:
    return EventLogMatch.select(EventLogMatch, EventLog).join(EventLog)


def deliveries(sub: EventMatch, limit: str | None = None, before: str | None = None, state: str | None = None) -> dict:
    """A page of the subscription's deliveries, newest first: ``{"items": [...], "next": cursor or None}``."""
    size = parse_limit(limit)
    query = _joined().where(EventLogMatch.event_match == sub.uuid)
    if state is not None:
        if state not in DELIVERY_STATES:
            raise ClientError(f'state: expected one of {", ".join(DELIVERY_STATES)}, not {state[:40]!r}')
        query = query.where(EventLogMatch.state_sql() == state)
    if before is not None:
        created, row = _read_cursor(before)
        query = query.where((EventLog.created < created) | ((EventLog.created == created) & (EventLogMatch.uuid < row)))
    rows = list(query.order_by(EventLog.created.desc(), EventLogMatch.uuid.desc()).limit(size + 1))
    page = rows[:size]
    return {'items': [entry(row) for row in page], 'next': _cursor(page[-1]) if len(rows) > size else None}


def event_for(user: str, event_uuid: uuid.UUID) -> dict:
    """One event as received, with its deliveries to ``user``'s subscriptions only; :class:`NotVisible` if none."""
    rows = list(
        EventLogMatch.select(EventLogMatch, EventLog, EventMatch)
        .join(EventLog)
        .switch(EventLogMatch)
        .join(EventMatch)
        .where((EventLogMatch.event_log == event_uuid) & (EventMatch.user == user))
        .order_by(EventLogMatch.created, EventLogMatch.uuid)
    )
    rows = [row for row in rows if row.event_match.user == user]  # MySQL compares names without case
    if not rows:
        raise NotVisible(f'event {event_uuid} matched none of your subscriptions')
    event: Any = json.loads(rows[0].event_log.jsondata)
    return {
        'uuid': str(event_uuid),
        'received': _iso(rows[0].event_log.created),
        'event': event,
        'deliveries': [{'subscription': str(row.event_match_id), **entry(row, event)} for row in rows],
    }
