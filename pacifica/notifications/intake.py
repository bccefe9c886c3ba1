"""Event intake: what happens to an event between ``POST /receive`` and the pipeline.

The event is committed to the log before the request is answered, and only
then queued; the log, not the broker, is the source of truth.  An event the
broker never got stays due in the log until the recovery sweep queues it.

Concurrent requests are committed together (:class:`GroupCommit`): one
transaction and one broker message for all the events that arrived while
the previous commit was under way.  A lone request is committed at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from typing import NamedTuple

from peewee import DatabaseError, IntegrityError

from . import due
from .binding import connect, write_transaction
from .models import EventLog, utcnow
from .tasks import dispatch_events

LOG = logging.getLogger(__name__)


class Received(NamedTuple):
    """The logged event, and whether it had been received before."""

    event: EventLog
    duplicate: bool


def event_id(event: dict) -> object:
    """The CloudEvent's id: ``id`` in CloudEvents 1.0, ``eventID`` in 0.1 (None if absent)."""
    if 'specversion' in event or 'eventID' not in event:
        return event.get('id')
    return event.get('eventID')


def dedup_key(event: dict) -> str | None:
    """A digest naming the event by its source and id; None unless it has both."""
    ident = event_id(event)
    if ident is None or event.get('source') is None:
        return None
    text = json.dumps([event.get('source'), ident], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def store_event(event: dict) -> Received:
    """Commit the event to the log, due for dispatch; or find the copy logged before.

    The unique ``dedup_key`` decides, so two copies racing each other store one.
    """
    key = dedup_key(event)
    try:
        with write_transaction():
            row = EventLog.create(
                jsondata=json.dumps(event, ensure_ascii=False), dedup_key=key, retry_at=due.deadline()
            )
    except IntegrityError:
        first = EventLog.get_or_none(EventLog.dedup_key == key) if key else None
        if first is None:
            raise
        return Received(first, True)
    return Received(row, False)


class _Slot:
    """One request's event, waiting for the commit that stores it."""

    __slots__ = ('error', 'event', 'key', 'received')

    def __init__(self, event: dict):
        self.event = event
        self.key = dedup_key(event)
        self.received: Received | None = None
        self.error: BaseException | None = None

    @property
    def answered(self) -> bool:
        return self.received is not None or self.error is not None


class GroupCommit:
    """Store the events of concurrent requests in one transaction, and queue them in one message.

    The first request to arrive while no commit is under way leads: it takes
    the events waiting (its own among them), commits and queues them, and
    wakes the others; a request arriving during a commit waits for the next.
    """

    #: Most events one commit takes.
    MAX_BATCH = 256

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Slot] = []
        self._leading = False

    def receive(self, event: dict) -> Received:
        """Store ``event`` (or find its first copy) and queue it; raise what the database raised."""
        slot = _Slot(event)
        fresh: list[str] = []
        with self._cond:
            self._waiting.append(slot)
            while not slot.answered:
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                batch, self._waiting = self._waiting[: self.MAX_BATCH], self._waiting[self.MAX_BATCH :]
                self._cond.release()
                try:
                    fresh.extend(_store_batch(batch))
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()
        # Queued after the followers are answered and the next commit may begin.
        if fresh:
            _queue(fresh)
        if slot.error is not None:
            raise slot.error
        assert slot.received is not None
        return slot.received


def _store_batch(batch: list[_Slot]) -> list[str]:
    """Store a batch in one transaction and answer each slot; return the uuids of the new events."""
    try:
        return _store(batch)
    except IntegrityError:
        # Another process stored one of these keys meanwhile: go one by one.
        fresh = []
        for slot in batch:
            _answer_alone(slot)
            if slot.received is not None and not slot.received.duplicate:
                fresh.append(str(slot.received.event.uuid))
        return fresh
    except DatabaseError as exc:
        for slot in batch:
            slot.error = exc
        return []


def _store(batch: list[_Slot]) -> list[str]:
    """Insert the batch's new events (the first of each key); answer every slot; return the new uuids.

    The insert skips keys stored before; only when it skipped some are they read.
    """
    first: dict[str, _Slot] = {}
    rows: list[tuple[_Slot, EventLog]] = []
    for slot in batch:
        if slot.key is None or slot.key not in first:
            if slot.key:
                first[slot.key] = slot
            row = EventLog(
                uuid=uuid.uuid4(),
                jsondata=json.dumps(slot.event, ensure_ascii=False),
                dedup_key=slot.key,
                created=utcnow(),
                retry_at=due.deadline(),
            )
            rows.append((slot, row))
    connect()
    with write_transaction():
        inserted = (
            EventLog.insert_many([row.__data__ for _slot, row in rows]).on_conflict_ignore().as_rowcount().execute()
        )
        stored = {}
        if inserted != len(rows):
            keys = [row.dedup_key for _slot, row in rows if row.dedup_key]
            stored = {row.dedup_key: row for row in EventLog.select().where(EventLog.dedup_key.in_(keys))}
    fresh = []
    for slot, row in rows:
        earlier = stored.get(row.dedup_key) if row.dedup_key else None
        if earlier is not None and earlier.uuid != row.uuid:
            slot.received = Received(earlier, True)
        else:
            slot.received = Received(row, False)
            fresh.append(str(row.uuid))
    for slot in batch:
        if not slot.answered and slot.key in first:
            slot.received = Received(first[slot.key].received.event, True)  # type: ignore[union-attr]
    return fresh


def _answer_alone(slot: _Slot) -> None:
    try:
        slot.received = store_event(slot.event)
    except DatabaseError as exc:
        slot.error = exc


def _queue(event_uuids: list[str]) -> None:
    """Queue stored events for dispatch; if the broker is down they stay due, for the sweep."""
    try:
        dispatch_events.delay(event_uuids)
    except Exception as exc:  # noqa: BLE001
        # Whatever the broker client raised (a refused or a reset connection
        # surface as different types), the events are safe in the log.
        due.release(event_uuids, [])
        LOG.error('%d event(s) stored but not queued (broker unavailable): %r', len(event_uuids), exc)


_GROUP: tuple[int, GroupCommit] | None = None
_GROUP_LOCK = threading.Lock()


def receive(event: dict) -> Received:
    """Store the event (committed before this returns), then hand it to the pipeline.

    A broker outage does not fail the request: the event is stored, made due
    at once, and the recovery sweep queues it when the broker is back.
    """
    global _GROUP
    with _GROUP_LOCK:
        if _GROUP is None or _GROUP[0] != os.getpid():
            _GROUP = (os.getpid(), GroupCommit())
        group = _GROUP[1]
    return group.receive(event)
