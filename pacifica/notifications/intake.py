"""Event intake: what happens to an event between ``POST /receive`` and the pipeline."""
from __future__ import annotations

import json
import logging

from .orm import EventLog
from .tasks import dispatch_event

LOG = logging.getLogger(__name__)


def store_event(event: dict) -> EventLog:
    """Commit the event to the log; the log, not the broker, is the source of truth."""
    return EventLog.create(jsondata=json.dumps(event, ensure_ascii=False))


def receive(event: dict) -> EventLog:
    """Store the event, then hand it to the pipeline."""
    orm_event = store_event(event)
    dispatch_event.delay(str(orm_event.uuid))
    return orm_event
