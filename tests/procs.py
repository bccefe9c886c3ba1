"""Real processes for tests: start them on ephemeral loopback ports, wait, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import requests


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = 'condition'):
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout}s waiting for {what}')
        time.sleep(interval)


def script(name: str) -> str:
    """Path of an installed console script of this environment."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f'{name} is not installed: pip install -e .'
    return str(path)


class Proc:
    """A child process in its own process group, with its output kept in a log file."""

    def __init__(self, args: list[str], env: dict, log: Path, cwd: Path | None = None):
        self.log = log
        self._out = open(log, 'ab')
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors='replace')[-6000:]

    def wait_for_output(self, text: str, timeout: float = 60.0) -> Proc:
        """Wait until the process has printed ``text`` (failing if it dies first)."""

        def printed():
            if self.proc.poll() is not None:
                raise AssertionError(f'process exited {self.proc.returncode}: {self.output()}')
            return text in self.log.read_text(errors='replace')

        wait_until(printed, timeout, what=f'{text!r} in {self.log.name}')
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def stop(self) -> None:
        """Stop the whole process group: TERM, then KILL if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()


class Service(Proc):
    """A process serving HTTP on 127.0.0.1:port."""

    def __init__(self, args: list[str], env: dict, port: int, log: Path, cwd: Path | None = None):
        super().__init__(args, env, log, cwd)
        self.port = port
        self.url = f'http://127.0.0.1:{port}'

    def wait_ready(self, path: str = '/eventmatch', timeout: float = 60.0) -> Service:
        """Wait until the service answers HTTP (any status) or its process dies."""

        def answering():
            if self.proc.poll() is not None:
                raise AssertionError(f'process exited {self.proc.returncode}: {self.output()}')
            try:
                return requests.get(self.url + path, timeout=2) is not None
            except requests.ConnectionError:
                return False

        wait_until(answering, timeout, what=f'{self.url} to answer')
        return self


def notifications_server(env: dict, log: Path, *extra: str, cwd: Path | None = None) -> Service:
    """Start ``pacifica-notifications`` on a free port."""
    port = free_port()
    return Service([script('pacifica-notifications'), '-p', str(port), *extra], env, port, log, cwd)


def require_uwsgi() -> None:
    """Skip the test where uWSGI is not installed (it builds from source, so needs a compiler)."""
    if not (Path(sys.executable).parent / 'uwsgi').exists():
        pytest.skip("uWSGI is not installed here: pip install -e '.[uwsgi]'")


def uwsgi_server(env: dict, log: Path) -> Service:
    """Start the WSGI module under uWSGI, as the seed deploys it."""
    require_uwsgi()
    port = free_port()
    args = [
        script('uwsgi'),
        '--http-socket',
        f'127.0.0.1:{port}',
        '--master',
        '--module',
        'pacifica.notifications.wsgi',
        '--virtualenv',
        sys.prefix,
        '--processes',
        '2',
        '--threads',
        '4',
        '--need-app',
        '--die-on-term',
        '--disable-logging',
    ]
    return Service(args, env, port, log)


def celery_worker(env: dict, log: Path, concurrency: int = 4, pool: str = 'threads') -> Proc:
    """Start a worker as operators do: ``celery -A pacifica.notifications.tasks worker``.

    ``pool='prefork'``: worker processes forked from the main one (``WORKER_POOL``).
    """
    env = {**env, 'WORKER_POOL': pool}
    args = [
        script('celery'),
        '-A',
        'pacifica.notifications.tasks',
        'worker',
        '--pool',
        pool,
        '--concurrency',
        str(concurrency),
        '--loglevel',
        'INFO',
        '--without-gossip',
        '--without-mingle',
        '--without-heartbeat',
    ]
    return Proc(args, env, log).wait_for_output(' ready.')
