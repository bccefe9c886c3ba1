"""Which live subscriptions an event matches, from compiled copies kept in each process.

Loading and parsing every subscription for every event would cost far more
than matching them.  Each process keeps the live subscriptions compiled
(:func:`jsonpath.compile_text`), grouped by expression, and indexed by what
each expression requires of an event (:mod:`pathindex`), so an event tries
only the few expressions it could match.

The copy follows the table by reading only what changed: every change to a
subscription sets its ``updated`` (indexed), and each refresh reads the rows
updated since the latest time it has seen, less :attr:`Matcher.CHANGE_MARGIN`
(a change committed a moment after a later one is still found).  A change
costs the work of that one subscription.  Every :attr:`Matcher.FULL_CHECK`
seconds the copy is compared with the whole table, row versions only, which
also finds a change stamped by a host whose clock lags the others.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from . import jsonpath
from .models import EventMatch
from .pathindex import PathIndex, requirements, tokens

LOG = logging.getLogger(__name__)


@dataclass
class _Expression:
    """One distinct expression, compiled, and the live subscriptions holding it.

    Only the compiled function is kept, not the parsed tree (most of the
    memory an expression takes); ``matches`` is None if it does not parse.

    ``oldest`` and ``newest`` bound their creation times, so most events
    (received after all of them) skip checking each one.
    """

    matches: Callable[[Any], bool] | None
    parsed_here: bool = False
    compiled_here: bool = False
    subscriptions: dict[UUID, EventMatch] = field(default_factory=dict)
    oldest: datetime = datetime.max
    newest: datetime = datetime.min

    def add(self, sub: EventMatch) -> None:
        self.subscriptions[sub.uuid] = sub
        self.oldest, self.newest = min(self.oldest, sub.created), max(self.newest, sub.created)

    def remove(self, uuid: UUID) -> None:
        del self.subscriptions[uuid]
        created = [sub.created for sub in self.subscriptions.values()]
        self.oldest, self.newest = min(created, default=datetime.max), max(created, default=datetime.min)


#: Before any subscription's ``updated``: where reading changes starts when there were none.
_EPOCH = datetime(1970, 1, 1)


class Matcher:
    """This process's copy of the live subscriptions, compiled, grouped by expression and indexed."""

    #: Seconds before the latest change seen that each refresh reads again.
    CHANGE_MARGIN = 5.0
    #: Seconds between comparisons of the whole table with the copy.
    FULL_CHECK = 300.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[UUID, EventMatch] = {}
        self._versions: dict[UUID, datetime] = {}  # every row's ``updated``, live or not
        self._expressions: dict[str, _Expression] = {}
        self._index: PathIndex[str] = PathIndex()
        self._loaded = False
        self._seen = _EPOCH  # the latest ``updated`` read
        self._checked = 0.0

    def match(self, event: dict, received: datetime) -> list[EventMatch]:
        """The live subscriptions that existed at ``received`` and whose expression finds something."""
        return self.current().match(event, received)

    def current(self, full: bool = False) -> Snapshot:
        """Bring the copy up to date; the result matches any event received before now.

        With ``full`` (or every :attr:`FULL_CHECK` seconds) the whole table is
        compared with the copy, which also drops rows removed from it.
        """
        with self._lock:
            if not self._loaded:
                self._load_all()
            elif full or time.monotonic() - self._checked > self.FULL_CHECK:
                self._check_all()
            else:
                self._load_changes()
        return Snapshot(self)

    def match_copy(self, event: Any, received: datetime) -> list[EventMatch]:
        """Match against the copy as it stands (no refresh); see :meth:`Snapshot.match`.

        Subscriptions sharing an expression are judged by one evaluation.  An
        expression that fails on this event (jsonpath2 would fail too) matches
        nothing, and the others are still tried.
        """
        matched: list[EventMatch] = []
        with self._lock:
            for text in self._index.candidates(tokens(event)):
                entry = self._expressions[text]
                if entry.matches is None or entry.oldest > received or not _matches(text, entry.matches, event):
                    continue
                if entry.newest <= received:
                    matched.extend(entry.subscriptions.values())
                else:
                    matched.extend(sub for sub in entry.subscriptions.values() if sub.created <= received)
        return matched

    def stats(self) -> dict[str, int]:
        """Sizes, and how many expressions jsonpath2 parses or matches itself (for logs and benchmarks)."""
        with self._lock:
            parsed = [entry for entry in self._expressions.values() if entry.matches is not None]
            return {
                'subscriptions': len(self._live),
                'expressions': len(self._expressions),
                'unparsable': len(self._expressions) - len(parsed),
                'parsed_by_jsonpath2': sum(1 for entry in parsed if not entry.parsed_here),
                'matched_by_jsonpath2': sum(1 for entry in parsed if not entry.compiled_here),
            }

    def _load_all(self) -> None:
        started = time.monotonic()
        with _collector_paused():
            for row in EventMatch.select():
                self._apply(row)
        self._loaded, self._checked = True, time.monotonic()
        LOG.info('matcher: %d live subscriptions loaded in %.1f s', len(self._live), self._checked - started)

    def _load_changes(self) -> None:
        since = self._seen - timedelta(seconds=self.CHANGE_MARGIN)
        versions = _versions(EventMatch.updated >= since)
        self._read_changed([uuid for uuid, updated in versions.items() if self._versions.get(uuid) != updated])

    def _check_all(self) -> None:
        """Compare every row's version with the copy's; read what differs, drop what is gone."""
        versions = _versions(True)
        for gone in set(self._versions) - set(versions):
            self._forget(gone)
            del self._versions[gone]
        self._read_changed([uuid for uuid, updated in versions.items() if self._versions.get(uuid) != updated])
        self._checked = time.monotonic()

    def _read_changed(self, uuids: list[UUID]) -> None:
        for start in range(0, len(uuids), 500):
            for row in EventMatch.select().where(EventMatch.uuid.in_(uuids[start : start + 500])):
                self._apply(row)

    def _apply(self, row: EventMatch) -> None:
        """Take in one row as it is now: file it if live, else drop it."""
        self._forget(row.uuid)
        self._versions[row.uuid] = row.updated
        self._seen = max(self._seen, row.updated)
        if not row.is_live():
            return
        entry = self._expressions.get(row.jsonpath)
        if entry is None:
            entry = self._expressions[row.jsonpath] = self._new_expression(row.jsonpath)
        entry.add(row)
        self._live[row.uuid] = row

    def _new_expression(self, text: str) -> _Expression:
        try:
            compiled = jsonpath.compile_text(text)
        except jsonpath.JsonPathError:
            LOG.warning('skipping subscriptions with an unparsable jsonpath %r', text)
            return _Expression(None)
        self._index.add(text, requirements(compiled.path))
        return _Expression(compiled.matches, compiled.parsed_here, compiled.compiled_here)

    def _forget(self, uuid: UUID) -> None:
        sub = self._live.pop(uuid, None)
        if sub is None:
            return
        entry = self._expressions[sub.jsonpath]
        entry.remove(uuid)
        if not entry.subscriptions:
            del self._expressions[sub.jsonpath]
            self._index.remove(sub.jsonpath)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while many long-lived objects are made, then exempt them from it.

    Loading tens of thousands of compiled expressions otherwise triggers
    collections that traverse everything made so far, again and again (a
    third of the load time), and later ones that traverse it all for nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()


def _versions(condition: Any) -> dict[UUID, datetime]:
    """Each row's ``updated``, by uuid, for the rows meeting ``condition``."""
    query = EventMatch.select(EventMatch.uuid, EventMatch.updated).where(condition).tuples()
    return dict(cast(Iterable[tuple[UUID, datetime]], query))


def _matches(text: str, matches: Callable[[Any], bool], event: Any) -> bool:
    try:
        return matches(event)
    except Exception as exc:  # noqa: BLE001 - whatever jsonpath2 itself would raise (a slice step of 0)
        LOG.warning('jsonpath %r failed on an event, taken as no match: %r', text, exc)
        return False


class Snapshot:
    """The matcher's copy as it stands: what an event received before the last refresh matches."""

    def __init__(self, matcher: Matcher):
        self._matcher = matcher

    def match(self, event: Any, received: datetime) -> list[EventMatch]:
        """The subscriptions that existed at ``received`` and whose expression finds something."""
        return self._matcher.match_copy(event, received)


_MATCHER: tuple[int, Matcher] | None = None
_MATCHER_LOCK = threading.Lock()


def matcher() -> Matcher:
    """This process's matcher (a forked child makes its own)."""
    global _MATCHER
    with _MATCHER_LOCK:
        if _MATCHER is None or _MATCHER[0] != os.getpid():
            _MATCHER = (os.getpid(), Matcher())
        return _MATCHER[1]


def reset() -> None:
    """Drop this process's copy, to be read afresh on next use (when it binds another database)."""
    global _MATCHER
    with _MATCHER_LOCK:
        _MATCHER = None
