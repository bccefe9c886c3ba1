"""Which live subscriptions an event matches, from a copy of them kept in memory.

Reading every subscription for every event costs more than matching them,
so each process keeps the live ones, grouped by expression and indexed by
what each expression requires of an event (:mod:`pathindex`), and reads
them again only when they changed.  A subscription is never removed from
the table and every change to one sets its ``updated``, so the count of
rows and the latest ``updated`` say whether the copy is current: one small
query per event.  Only the expressions an event could match are tried.
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
from .pathindex import PathIndex, requirements, tokens

LOG = logging.getLogger(__name__)


class Matcher:
    """This process's copy of the live subscriptions, grouped by expression."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprint: tuple | None = None
        self._groups: dict[str, list[EventMatch]] = {}
        self._index: PathIndex[str] = PathIndex()

    def match(self, event: dict, received: datetime) -> list[EventMatch]:
        """The live subscriptions that existed at ``received`` and whose expression finds something."""
        return self.current().match(event, received)

    def current(self) -> Snapshot:
        """The live subscriptions as they are now: a snapshot good for any event received before now."""
        return Snapshot(*self._current())

    def _current(self) -> tuple[dict[str, list[EventMatch]], PathIndex[str]]:
        fingerprint = EventMatch.select(fn.COUNT(EventMatch.uuid), fn.MAX(EventMatch.updated)).scalar(as_tuple=True)
        with self._lock:
            if fingerprint != self._fingerprint:
                groups: dict[str, list[EventMatch]] = defaultdict(list)
                for sub in EventMatch.select().where(EventMatch.live()):
                    groups[sub.jsonpath].append(sub)
                index: PathIndex[str] = PathIndex()
                for text, group in groups.items():
                    try:
                        index.add(text, requirements(jsonpath.parse(text)))
                    except jsonpath.JsonPathError:
                        LOG.warning('skipping %d subscription(s) with an unparsable jsonpath %r', len(group), text)
                self._groups, self._index, self._fingerprint = dict(groups), index, fingerprint
            return self._groups, self._index


class Snapshot:
    """The live subscriptions at one moment, grouped and indexed."""

    def __init__(self, groups: dict[str, list[EventMatch]], index: PathIndex[str]):
        self.groups, self.index = groups, index

    def match(self, event: dict, received: datetime) -> list[EventMatch]:
        """The subscriptions that existed at ``received`` and whose expression finds something.

        Subscriptions sharing an expression are judged by one evaluation.
        """
        matched = []
        for text in self.index.candidates(tokens(event)):
            eligible = [sub for sub in self.groups[text] if sub.created <= received]
            if eligible and jsonpath.matches(text, event):
                matched.extend(eligible)
        return matched


_MATCHER: tuple[int, Matcher] | None = None
_MATCHER_LOCK = threading.Lock()


def matcher() -> Matcher:
    """This process's matcher (a forked child makes its own)."""
    global _MATCHER
    with _MATCHER_LOCK:
        if _MATCHER is None or _MATCHER[0] != os.getpid():
            _MATCHER = (os.getpid(), Matcher())
        return _MATCHER[1]
