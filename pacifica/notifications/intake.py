"""Event intake: what happens to an event between ``POST /receive`` and the pipeline.

The event is committed to the log before the request is answered, and only
then queued; the log, not the broker, is the source of truth.  An event the
broker never got stays due in the log until the recovery sweep queues it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import NamedTuple

from peewee import IntegrityError

from . import due
from .models import BaseModel, EventLog
from .tasks import dispatch_event

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
        with BaseModel.atomic():
            row = EventLog.create(
                jsondata=json.dumps(event, ensure_ascii=False), dedup_key=key, retry_at=due.deadline()
            )
    except IntegrityError:
        first = EventLog.get_or_none(EventLog.dedup_key == key) if key else None
        if first is None:
            raise
        return Received(first, True)
    return Received(row, False)


def receive(event: dict) -> Received:
    """Store the event, then hand it to the pipeline.

    A broker outage does not fail the request: the event is stored, made due
    at once, and the recovery sweep queues it when the broker is back.
    """
    received = store_event(event)
    if received.duplicate:
        return received
    try:
        dispatch_event.delay(str(received.event.uuid))
    except Exception as exc:  # noqa: BLE001
        # Whatever the broker client raised (a refused or a reset connection
        # surface as different types), the event is safe in the log.
        due.release([str(received.event.uuid)], [])
        LOG.error('event %s stored but not queued (broker unavailable): %r', received.event.uuid, exc)
    return received
