"""Make HTTP calls concurrently, a few at a time per target, without tying up a task.

One pool of threads per process makes the calls.  Each target (its URL) has
at most ``target_concurrency`` calls in flight; further calls to it wait in
that target's line, holding no thread.  So a target that hangs until the
read timeout holds that many threads and no more, and every other target is
served as before.  A target is stalled when one of its calls has been
running for a while; a call still waiting in a stalled target's line can be
withdrawn, to be queued in the broker instead (see :mod:`pipeline`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from .config import settings

LOG = logging.getLogger(__name__)


class Sender:
    """A thread pool with a line per target."""

    def __init__(self, threads: int, per_target: int):
        self.per_target = per_target
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._running: dict[str, list[float]] = {}  # per target: when each call on a thread began
        self._waiting: dict[str, deque[tuple[Callable[[], object], Future]]] = {}
        self._ready: queue.SimpleQueue[tuple[str, Callable[[], object], Future] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f'sender-{number}', daemon=True) for number in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, target: str, call: Callable[[], object]) -> Future:
        """Run ``call`` for ``target`` now if it has a free place, or when it next has one."""
        future: Future = Future()
        with self._lock:
            if self._in_flight.get(target, 0) < self.per_target:
                self._in_flight[target] = self._in_flight.get(target, 0) + 1
                self._start(target, call, future)
            else:
                self._waiting.setdefault(target, deque()).append((call, future))
        return future

    def withdraw(self, target: str, future: Future) -> bool:
        """Take back a call still waiting in line (True), so it will not run here."""
        with self._lock:
            line = self._waiting.get(target)
            for item in line or ():
                if item[1] is future:
                    line.remove(item)  # type: ignore[union-attr]
                    future.cancel()
                    return True
        return False

    def shutdown(self) -> None:
        """Let the calls under way finish in the background; drop those waiting (they stay due)."""
        with self._lock:
            for line in self._waiting.values():
                for _call, future in line:
                    future.cancel()
            self._waiting.clear()
        for _thread in self._threads:
            self._ready.put(None)

    def stalled(self, target: str, after: float) -> bool:
        """Whether a call to ``target`` has been running (on a thread) for more than ``after`` seconds."""
        with self._lock:
            began = self._running.get(target)
            return began is not None and time.monotonic() - min(began) > after

    def busy(self) -> dict[str, int]:
        """Calls in flight per target (for metrics and tests)."""
        with self._lock:
            return dict(self._in_flight)

    def _start(self, target: str, call: Callable[[], object], future: Future) -> None:
        future.set_running_or_notify_cancel()
        self._ready.put((target, call, future))

    def _serve(self) -> None:
        while (item := self._ready.get()) is not None:
            self._run(*item)

    def _run(self, target: str, call: Callable[[], object], future: Future) -> None:
        began = time.monotonic()
        with self._lock:
            self._running.setdefault(target, []).append(began)
        try:
            future.set_result(call())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            future.set_exception(exc)
        finally:
            with self._lock:
                running = self._running[target]
                running.remove(began)
                if not running:
                    del self._running[target]
                line = self._waiting.get(target)
                if line:
                    next_call, next_future = line.popleft()
                    if not line:
                        del self._waiting[target]
                    self._start(target, next_call, next_future)
                else:
                    self._in_flight[target] -= 1
                    if not self._in_flight[target]:
                        del self._in_flight[target]


_SENDER: tuple[int, tuple[int, int], Sender] | None = None
_SENDER_LOCK = threading.Lock()


def sender() -> Sender:
    """This process's sender (a forked child makes its own, and so does a change of settings)."""
    global _SENDER
    config = settings()
    sizes = (config.delivery_threads, config.target_concurrency)
    with _SENDER_LOCK:
        if _SENDER is None or _SENDER[0] != os.getpid() or _SENDER[1] != sizes:
            if _SENDER is not None and _SENDER[0] == os.getpid():
                _SENDER[2].shutdown()
            _SENDER = (os.getpid(), sizes, Sender(*sizes))
        return _SENDER[2]
