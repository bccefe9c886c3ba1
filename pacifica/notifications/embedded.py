"""The embedded default's worker: a Celery worker the server starts and stops with itself.

With the embedded (filesystem) broker nothing else would consume the queue,
so ``pacifica-notifications`` runs one worker process beside the web server,
starts it again should it die, and stops it when the server stops (Ctrl-C,
SIGTERM).  Work a dead worker held is queued again by the recovery sweep.
"""

from __future__ import annotations

import subprocess
import sys

from cherrypy.process.plugins import Monitor, SimplePlugin

WORKER_ARGS = [
    '-m',
    'celery',
    '-A',
    'pacifica.notifications.tasks',
    'worker',
    '--pool',
    'threads',
    '--concurrency',
    '8',
    '--loglevel',
    'INFO',
    '--without-gossip',
    '--without-mingle',
    '--without-heartbeat',
]


class EmbeddedWorker(SimplePlugin):
    """Run a Celery worker process for as long as the CherryPy engine runs."""

    #: Seconds between two checks that the worker is still alive.
    CHECK_EVERY = 2.0

    def __init__(self, bus):
        super().__init__(bus)
        self.proc: subprocess.Popen | None = None
        self.watch = Monitor(bus, self.revive, frequency=self.CHECK_EVERY, name='EmbeddedWorkerWatch')

    def subscribe(self) -> None:
        """Subscribe to the engine, with the watch that revives a dead worker."""
        super().subscribe()
        self.watch.subscribe()

    def start(self) -> None:
        """Start the worker; it inherits this process's configuration through the environment."""
        self.proc = subprocess.Popen([sys.executable, *WORKER_ARGS])
        self.bus.log(f'Started embedded Celery worker (pid {self.proc.pid}).')

    start.priority = 80  # type: ignore[attr-defined]  # CherryPy reads it

    def revive(self) -> None:
        """Start the worker again if it died while the engine runs."""
        if self.proc is not None and self.proc.poll() is not None and self.bus.state == self.bus.states.STARTED:
            self.bus.log(f'Embedded Celery worker exited ({self.proc.returncode}); starting another.')
            self.start()

    def stop(self) -> None:
        """Ask the worker to finish its current tasks and exit; kill it if it will not."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.bus.log('Stopped embedded Celery worker.')
