"""Run the recovery sweep in the background of a long-lived process.

The sweep itself is :func:`tasks.recover`; this module only repeats it,
every ``sweep_interval`` seconds, in a daemon thread that each Celery worker
starts and stops with itself.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

LOG = logging.getLogger(__name__)


class Sweeper:
    """Call ``sweep`` every ``interval`` seconds until stopped; a failed sweep is logged, not fatal."""

    def __init__(self, sweep: Callable[[], object], interval: float):
        self.sweep = sweep
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sweeping in a daemon thread (once)."""
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=self._run, name='recovery-sweep', daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish its current sweep and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:  # pylint: disable=broad-except
                LOG.exception('recovery sweep failed; trying again in %s s', self.interval)

