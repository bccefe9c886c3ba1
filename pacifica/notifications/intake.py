"""Event intake: what happens to an event between ``POST /receive`` and the pipeline."""
from __future__ import annotations

import json

from .orm import EventLog


def store_event(event: dict) -> EventLog:
    """Commit the event to the log; the log, not the broker, is the source of truth."""
    return EventLog.create(jsondata=json.dumps(event, ensure_ascii=False))
