"""Run the recovery sweep in the background of a long-lived process.

The sweep itself is :func:`tasks.recover`; this module only repeats it,
every ``interval`` seconds, in a daemon thread that each Celery worker
starts and stops with itself, and runs a resync (:func:`tasks.recover_all`)
as soon as one is asked for.  The thread opens its own database connection
(connections are per thread), so it never shares one with a task.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from peewee import DatabaseError

LOG = logging.getLogger(__name__)

#: Seconds before a failed resync is tried again.
RESYNC_RETRY = 5.0


class Sweeper:
    """Call ``sweep`` every ``interval`` seconds, and ``resync`` when asked, until stopped.

    A failed sweep is logged, not fatal; a failed resync is tried again
    after :data:`RESYNC_RETRY` seconds.
    """

    def __init__(self, sweep: Callable[[], object], resync: Callable[[], object] | None = None):
        self.sweep = sweep
        self.resync = resync
        self.interval = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._resync_wanted = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval: float) -> None:
        """Start the thread (once): sweeps every ``interval`` seconds (none if 0), resyncs on request."""
        if self._thread is None:
            self.interval = interval
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name='recovery-sweep', daemon=True)
            self._thread.start()

    def request_resync(self) -> None:
        """Ask for a resync as soon as possible (also before the thread starts)."""
        self._resync_wanted.set()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish its current sweep and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.interval if self.interval > 0 else None
            if self._resync_wanted.is_set() and self.resync is not None:
                self._resync_wanted.clear()
                if not self._attempt(self.resync, 'resync'):
                    self._resync_wanted.set()
                    wait = RESYNC_RETRY
            elif self.interval > 0:
                self._attempt(self.sweep, 'recovery sweep')
            self._wake.wait(wait)
            self._wake.clear()

    def _attempt(self, action: Callable[[], object], name: str) -> bool:
        try:
            action()
            return True
        except DatabaseError as exc:  # down, or no schema yet: the usual, said in one line
            LOG.warning('%s failed (database: %s); trying again later', name, str(exc).strip())
        except Exception:
            LOG.exception('%s failed; trying again later', name)
        return False
