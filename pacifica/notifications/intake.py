"""Event intake: what happens to an event between ``POST /receive`` and the pipeline."""
from __future__ import annotations

import json
import logging

from kombu.exceptions import OperationalError

from .orm import EventLog
from .tasks import dispatch_event

LOG = logging.getLogger(__name__)


def store_event(event: dict) -> EventLog:
    """Commit the event to the log; the log, not the broker, is the source of truth."""
    return EventLog.create(jsondata=json.dumps(event, ensure_ascii=False))


def receive(event: dict) -> EventLog:
    """Store the event, then hand it to the pipeline.

    A broker outage does not fail the request: the event is already stored,
    and ``pacifica-notifications-cmd eventretry`` can dispatch it later.
    """
    orm_event = store_event(event)
    try:
        dispatch_event.delay(str(orm_event.uuid))
    except OperationalError as exc:
        LOG.error('event %s stored but not queued (broker unavailable): %s', orm_event.uuid, exc)
    return orm_event
