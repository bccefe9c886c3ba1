"""Which live subscriptions an event matches, from a copy of them kept in memory.

Reading every subscription for every event costs more than matching them,
so each process keeps the live ones, grouped by expression, and reads them
again only when they changed.  A subscription is never removed from the
table and every change to one sets its ``updated``, so the count of rows and
the latest ``updated`` say whether the copy is current: one small query per
event.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from datetime import datetime

from peewee import fn

from . import jsonpath
from .models import EventMatch

LOG = logging.getLogger(__name__)


class Matcher:
    """This process's copy of the live subscriptions, grouped by expression."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprint: tuple | None = None
        self._groups: dict[str, list[EventMatch]] = {}

    def match(self, event: dict, received: datetime) -> list[EventMatch]:
        """The live subscriptions that existed at ``received`` and whose expression finds something.

        Subscriptions sharing an expression are judged by one evaluation.
        """
        matched = []
        for text, group in self._current().items():
            eligible = [sub for sub in group if sub.created <= received]
            if not eligible:
                continue
            try:
                if jsonpath.matches(text, event):
                    matched.extend(eligible)
            except jsonpath.JsonPathError:
                LOG.warning('skipping %d subscription(s) with an unparsable jsonpath %r', len(eligible), text)
        return matched

    def _current(self) -> dict[str, list[EventMatch]]:
        fingerprint = EventMatch.select(fn.COUNT(EventMatch.uuid), fn.MAX(EventMatch.updated)).scalar(as_tuple=True)
        with self._lock:
            if fingerprint != self._fingerprint:
                groups: dict[str, list[EventMatch]] = defaultdict(list)
                for sub in EventMatch.select().where(EventMatch.live()):
                    groups[sub.jsonpath].append(sub)
                self._groups, self._fingerprint = dict(groups), fingerprint
            return self._groups


_MATCHER: tuple[int, Matcher] | None = None
_MATCHER_LOCK = threading.Lock()


def matcher() -> Matcher:
    """This process's matcher (a forked child makes its own)."""
    global _MATCHER
    with _MATCHER_LOCK:
        if _MATCHER is None or _MATCHER[0] != os.getpid():
            _MATCHER = (os.getpid(), Matcher())
        return _MATCHER[1]
