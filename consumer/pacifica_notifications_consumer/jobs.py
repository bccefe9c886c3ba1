"""The persistent job queue: one job per event, kept in a SQLite file in the work folder.

A job survives a restart of the runner: one that was running when the runner
stopped is queued again at the next start.  An event is known by its source
and id, so the same event delivered twice (a retry the service made, say) is
one job.  SQLite needs no server, as the service's own embedded default.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS job (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    state TEXT NOT NULL,
    received REAL NOT NULL,
    started REAL,
    finished REAL,
    exit_status INTEGER,
    stdout TEXT,
    stderr TEXT
)
"""

#: What a job can be: waiting, being run, finished well, finished badly.
STATES = ('queued', 'running', 'done', 'failed')


@dataclass(frozen=True)
class Job:
    """One queued event."""

    id: int
    event: dict


def event_key(event: dict) -> str:
    """A digest naming the event by its source and id (``id`` in CloudEvents 1.0, ``eventID`` in 0.1)."""
    ident = event.get('id') if 'specversion' in event else event.get('eventID', event.get('id'))
    if ident is None:  # no id: only the same bytes are the same event
        return 'body:' + hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(json.dumps([event.get('source'), ident], sort_keys=True).encode()).hexdigest()


class JobQueue:
    """Jobs in a SQLite file; safe to use from several threads of one process."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute('PRAGMA journal_mode=WAL')
        self._db.execute(SCHEMA)
        self._ready = threading.Condition(self._lock)

    def recover(self) -> int:
        """Queue again the jobs a stopped runner left running; return how many."""
        with self._lock:
            return self._db.execute("UPDATE job SET state = 'queued', started = NULL WHERE state = 'running'").rowcount

    def add(self, event: dict) -> bool:
        """Queue a job for the event; False when the event is queued or done already."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO job (event_key, event, state, received) VALUES (?, ?, 'queued', ?)",
                    (event_key(event), json.dumps(event), time.time()),
                )
            except sqlite3.IntegrityError:
                return False
            self._ready.notify()
            return True

    def take(self, timeout: float) -> Job | None:
        """The oldest queued job, now running; None if none comes within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                row = self._db.execute(
                    "SELECT id, event FROM job WHERE state = 'queued' ORDER BY id LIMIT 1"
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE job SET state = 'running', started = ? WHERE id = ?", (time.time(), row[0])
                    )
                    return Job(row[0], json.loads(row[1]))
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._ready.wait(left)

    def finish(self, job_id: int, ok: bool, exit_status: int | None, stdout: str, stderr: str) -> None:
        """Record a job's outcome."""
        with self._lock:
            self._db.execute(
                'UPDATE job SET state = ?, finished = ?, exit_status = ?, stdout = ?, stderr = ? WHERE id = ?',
                ('done' if ok else 'failed', time.time(), exit_status, stdout, stderr, job_id),
            )

    def put_back(self, job_id: int) -> None:
        """Queue a job again (it was stopped before it finished)."""
        with self._lock:
            self._db.execute("UPDATE job SET state = 'queued', started = NULL WHERE id = ?", (job_id,))

    def counts(self) -> dict[str, int]:
        """Jobs by state."""
        with self._lock:
            found = dict(self._db.execute('SELECT state, COUNT(*) FROM job GROUP BY state').fetchall())
        return {state: found.get(state, 0) for state in STATES}

    def wake_all(self) -> None:
        """Wake every thread waiting in :meth:`take` (to see that it should stop)."""
        with self._lock:
            self._ready.notify_all()

    def close(self) -> None:
        with self._lock:
            self._db.close()
