"""Event intake: what happens to an event between ``POST /receive`` and the pipeline.

The event is committed to the log before the request is answered, and only
then queued; the log, not the broker, is the source of truth.  An event the
broker never got stays due in the log until the recovery sweep queues it.

Concurrent requests are committed together (:class:`GroupCommit`): one
statement for all the events that arrived while the previous commit was
under way.  A lone request is committed at once.  Queueing is left to one
thread per process (:class:`Publisher`), which sends one broker message for
whatever has been stored since its last one: a request never waits for the
broker.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from datetime import datetime
from typing import NamedTuple

from peewee import DatabaseError, IntegrityError

from . import due, statements
from .binding import close, connect, write_transaction
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


def _new_row(event: dict, text: str | None, key: str | None, now: datetime, retry_at: datetime) -> EventLog:
    """The log row of a new event: its text as sent if known, else the event encoded."""
    jsondata = text if text is not None else json.dumps(event, ensure_ascii=False)
    return EventLog(uuid=uuid.uuid4(), jsondata=jsondata, dedup_key=key, created=now, retry_at=retry_at)


def store_event(event: dict, text: str | None = None) -> Received:
    """Commit the event to the log, due for dispatch; or find the copy logged before.

    The unique ``dedup_key`` decides, so two copies racing each other store one.
    """
    key = dedup_key(event)
    row = _new_row(event, text, key, utcnow(), due.deadline())
    try:
        with write_transaction():
            row.save(force_insert=True)
    except IntegrityError:
        first = EventLog.get_or_none(EventLog.dedup_key == key) if key else None
        if first is None:
            raise
        return Received(first, True)
    return Received(row, False)


class _Slot:
    """One request's event, waiting for the commit that stores it.

    ``turn`` is held until the slot is answered or its thread is asked to
    lead the next commit: the one wake-up its thread gets.
    """

    __slots__ = ('error', 'event', 'key', 'leads', 'received', 'text', 'turn')

    def __init__(self, event: dict, text: str | None = None):
        self.event = event
        self.text = text
        self.key = dedup_key(event)
        self.received: Received | None = None
        self.error: BaseException | None = None
        self.leads = False
        self.turn = threading.Lock()
        self.turn.acquire()

    @property
    def answered(self) -> bool:
        return self.received is not None or self.error is not None


class GroupCommit:
    """Store the events of concurrent requests in one statement.

    The first request to arrive while no commit is under way leads: it takes
    the events waiting (its own among them), commits them, hands the new ones
    to the publisher and wakes their requests; if more arrived meanwhile, it
    wakes the first of them to lead the next commit.  Every waiting request
    is woken once, when it is answered or asked to lead.  Under load (the
    last commit took more than one event) the leader waits a moment for as
    many as the last commit took: each commit costs about the same whatever
    it holds, so fuller ones serve more requests with the same processor.
    """

    #: Most events one commit takes.
    MAX_BATCH = 256
    #: Longest a leader waits, under load, for a fuller commit (seconds).
    LINGER = 0.002

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # wakes only a lingering leader
        self._lingering = False
        self._waiting: list[_Slot] = []
        self._leading = False
        self._last_batch = 0

    def receive(self, event: dict, text: str | None = None) -> Received:
        """Store ``event`` (or find its first copy) and queue it; raise what the database raised."""
        slot = _Slot(event, text)
        with self._lock:
            self._waiting.append(slot)
            if self._lingering:
                self._arrived.notify()
            slot.leads = not self._leading
            self._leading = True
        while not slot.answered:
            if not slot.leads:
                slot.turn.acquire()
                continue
            self._lead()
        if slot.error is not None:
            raise slot.error
        assert slot.received is not None
        return slot.received

    def _lead(self) -> None:
        """Commit one batch, wake its requests, and pass the lead on (or give it up)."""
        with self._lock:
            self._linger()
            batch, self._waiting = self._waiting[: self.MAX_BATCH], self._waiting[self.MAX_BATCH :]
        try:
            self._last_batch = len(batch)
            fresh = _store_batch(batch)
            if fresh:
                publisher().put(fresh)
        finally:
            with self._lock:
                for slot in batch:
                    slot.leads = False
                    if not slot.answered:  # only when storing raised something unexpected
                        slot.error = RuntimeError('the commit holding this event failed')
                    slot.turn.release()
                if self._waiting:
                    following = self._waiting[0]
                    following.leads = True
                    following.turn.release()
                else:
                    self._leading = False

    def _linger(self) -> None:
        """Under load, wait (the lock released meanwhile) for as many events as the last commit took."""
        if self._last_batch < 2:
            return
        until = time.monotonic() + self.LINGER
        self._lingering = True
        try:
            while len(self._waiting) < min(self._last_batch, self.MAX_BATCH):
                left = until - time.monotonic()
                if left <= 0:
                    return
                self._arrived.wait(left)
        finally:
            self._lingering = False


def _store_batch(batch: list[_Slot]) -> list[str]:
    """Store a batch (one statement) and answer each slot; return the uuids of the new events."""
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

    One statement, atomic by itself, so no transaction around it (a round trip
    each for begin and commit).  It skips keys stored before; only when it
    skipped some are they read.
    """
    first: dict[str, _Slot] = {}
    rows: list[tuple[_Slot, EventLog]] = []
    now, retry_at = utcnow(), due.deadline()
    for slot in batch:
        if slot.key is None or slot.key not in first:
            if slot.key:
                first[slot.key] = slot
            rows.append((slot, _new_row(slot.event, slot.text, slot.key, now, retry_at)))
    connect()
    inserted = statements.insert([row for _slot, row in rows], ignore_conflicts=True)
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
        slot.received = store_event(slot.event, slot.text)
    except DatabaseError as exc:
        slot.error = exc


def _queue(event_uuids: list[str]) -> None:
    """Queue stored events for dispatch; if the broker is down they stay due, for the sweep."""
    try:
        dispatch_events.delay(event_uuids)
    except Exception as exc:  # noqa: BLE001
        # Whatever the broker client raised (a refused or a reset connection
        # surface as different types), the events are safe in the log.
        LOG.error('%d event(s) stored but not queued (broker unavailable): %r', len(event_uuids), exc)
        try:
            connect()
            due.release(event_uuids, [])
        except DatabaseError as db_exc:
            LOG.error('could not make them due at once either (the sweep will find them): %s', db_exc)
        finally:
            close()


class Publisher:
    """One thread that queues stored events, many to a message.

    Whatever is stored while a message is being sent goes in the next one,
    so under load the broker sees a message per batch of commits, and a
    request's answer never waits for the broker.  An event the process dies
    holding is still due in the log, and the recovery sweep queues it.
    """

    #: Most events one message carries.
    MAX_MESSAGE = 256
    #: How long, under load, a message waits for more events (seconds).
    LINGER = 0.002

    def __init__(self) -> None:
        self._pending: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name='intake-publisher', daemon=True)
        self._thread.start()

    def put(self, event_uuids: list[str]) -> None:
        """Queue these stored events soon."""
        self._pending.put(event_uuids)

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is pending, then end the thread (waiting at most ``timeout`` seconds)."""
        self._pending.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        linger = 0.0
        while True:
            first = self._pending.get()
            if first is None:
                return
            message, stopping = self._gather(list(first), time.monotonic() + linger)
            _queue(message)
            if stopping:
                return
            # More arrived while that message was sent: under load, wait a
            # moment for more still, so messages carry more events each.
            linger = self.LINGER if not self._pending.empty() else 0.0

    def _gather(self, message: list[str], until: float) -> tuple[list[str], bool]:
        """Add what is pending (waiting until ``until`` for more); say whether to stop after."""
        while len(message) < self.MAX_MESSAGE:
            left = until - time.monotonic()
            try:
                more = self._pending.get(timeout=left) if left > 0 else self._pending.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return message, True
            message.extend(more)
        return message, False


_GROUP: tuple[int, GroupCommit] | None = None
_GROUP_LOCK = threading.Lock()
_PUBLISHER: tuple[int, Publisher] | None = None


def publisher() -> Publisher:
    """This process's publisher (a forked child starts its own); stopped, and so flushed, at exit."""
    global _PUBLISHER
    with _GROUP_LOCK:
        if _PUBLISHER is None or _PUBLISHER[0] != os.getpid():
            _PUBLISHER = (os.getpid(), Publisher())
            atexit.register(_PUBLISHER[1].stop)
        return _PUBLISHER[1]


def receive(event: dict, text: str | None = None) -> Received:
    """Store the event (committed before this returns), then hand it to the pipeline.

    ``text`` is the event's JSON as it came, if the caller has it: it is
    stored as it is, instead of the event encoded again.

    A broker outage does not fail the request: the event is stored, made due
    at once, and the recovery sweep queues it when the broker is back.
    """
    global _GROUP
    with _GROUP_LOCK:
        if _GROUP is None or _GROUP[0] != os.getpid():
            _GROUP = (os.getpid(), GroupCommit())
        group = _GROUP[1]
    return group.receive(event, text)


def receive_batch(events: list[dict]) -> list[Received]:
    """Store a batch of events in one transaction (all or none), then queue the new ones; answer in order.

    An event repeated within the batch, or stored before, is a duplicate of
    its first copy, as a lone one would be.
    """
    slots = [_Slot(event) for event in events]
    if not slots:
        return []
    connect()
    fresh: list[str] = []
    with write_transaction():
        for start in range(0, len(slots), GroupCommit.MAX_BATCH):
            fresh.extend(_store(slots[start : start + GroupCommit.MAX_BATCH]))
    if fresh:
        publisher().put(fresh)
    return [slot.received for slot in slots if slot.received is not None]
