"""Parts shared by the load benchmarks (``load.py``, ``compare.py``).

Everything here is stdlib plus ``requests``: processes started in their own process groups with
their output in log files (and their CPU time and memory read from ``/proc``), a threaded HTTP
catcher on 127.0.0.1, free ports, percentiles and small helpers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

BENCH = Path(__file__).resolve().parent
FIXTURE = BENCH.parent / 'tests' / 'fixtures' / 'events.json'

#: The prefix of progress lines on stderr; each script sets its own.
TAG = 'bench'


def log(message: str) -> None:
    print(f'[{TAG} {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


class Catcher:
    """Threaded HTTP server on 127.0.0.1 that answers every POST 200; ``record`` keeps them."""

    def __init__(self, record: bool):
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str, str, str]] = []  # (time, path, webhook-id, eventID)
        self.count = 0
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            # Headers and body go out in two writes; without TCP_NODELAY the second waits
            # ~40 ms for the client's delayed ACK (Nagle).
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                now = time.monotonic()
                marker = ''
                if record:
                    try:
                        marker = str(json.loads(body).get('eventID', ''))
                    except (ValueError, AttributeError):
                        pass
                with catcher.lock:
                    catcher.count += 1
                    if record:
                        catcher.arrivals.append((now, self.path, self.headers.get('webhook-id', ''), marker))
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'{}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def group_processes(groups: dict[int, str]) -> list[tuple[str, int, float, bool, int]]:
    """(name, pid, CPU seconds so far, alive, RSS kB) of every process in these process groups.

    ``groups`` maps a group leader's pid to a name; a process that is not the leader is reported
    as NAME+ (Linux /proc).
    """
    tick, found = os.sysconf('SC_CLK_TCK'), []
    page_kb = os.sysconf('SC_PAGE_SIZE') // 1024
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid, group = int(stat.parent.name), int(fields[2])
        if group in groups:
            found.append(
                (
                    groups[group] + ('' if pid == group else '+'),
                    pid,
                    (int(fields[11]) + int(fields[12])) / tick,
                    fields[0] not in 'ZX',
                    int(fields[21]) * page_kb,
                )
            )
    return found


try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child before exec: get SIGTERM if the benchmark dies (even by SIGKILL)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """The processes a script starts, each in its own process group with a log file.

    Processes they start themselves (the server's embedded worker, prefork children) share
    their group and are reported as NAME+.
    """

    def __init__(self, folder: Path, env: dict):
        self.folder, self.env, self.procs = folder, env, []
        self.expected: Counter | None = None  # live processes per name once all are ready
        self.died: list[str] = []

    def start(
        self, name: str, args: list[str], env: dict | None = None, cwd: Path | None = None
    ) -> tuple[subprocess.Popen, Path]:
        path = self.folder / f'{name}.log'
        with open(path, 'ab') as out:
            proc = subprocess.Popen(
                args,
                env=self.env if env is None else env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only async-signal-safe work (one prctl call through a library loaded already).
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        self.procs.append((name, proc))
        return proc, path

    def processes(self) -> list[tuple[str, float, bool]]:
        """(name, CPU seconds so far, alive) of every process in our groups (Linux /proc)."""
        groups = {proc.pid: name for name, proc in self.procs}
        return [(name, cpu, alive) for name, _pid, cpu, alive, _rss in group_processes(groups)]

    def memory(self) -> list[dict]:
        """Every live process in our groups with its RSS in MiB."""
        groups = {proc.pid: name for name, proc in self.procs}
        return [
            {'name': name, 'pid': pid, 'rss_mib': round(rss / 1024, 1)}
            for name, pid, _cpu, alive, rss in sorted(group_processes(groups))
            if alive
        ]

    def cpu_seconds(self) -> dict:
        used: dict[str, float] = {}
        for name, cpu, _alive in self.processes():
            used[name] = round(used.get(name, 0) + cpu, 2)
        return used

    def check(self) -> None:
        """Fail if a process exits while starting or if the server dies; note dead workers."""
        if self.expected is None:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f'{name} exited with status {proc.returncode}; see {self.folder / name}.log')
            return
        alive = Counter(name for name, _cpu, live in self.processes() if live)
        for name, count in self.expected.items():
            if alive[name] < count and name not in self.died:
                self.died.append(name)
                log(f'WARNING: {name} died (see {self.folder / name.rstrip("+")}.log); measuring on')
        if 'server' in self.died:
            raise RuntimeError(f'the server died; see {self.folder}/server.log')

    def wait_for(self, what: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f'timed out after {timeout:.0f}s waiting for {what}')
            time.sleep(0.1)

    @staticmethod
    def signal_group(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # the leader may be gone while its children live on
        except ProcessLookupError:
            pass

    def stop_all(self, grace: float = 30, leader_grace: float = 10) -> None:
        """Stop every group: SIGTERM to each leader (a Celery worker then stops its pool itself),
        after ``leader_grace`` seconds SIGTERM to the whole group, after ``grace`` more SIGKILL."""
        for _name, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + leader_grace
        for _name, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for _name, proc in self.procs:
            self.signal_group(proc, signal.SIGTERM)  # what is left: children, a leader that lingers
        deadline = time.monotonic() + grace
        for name, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f'{name} ignored SIGTERM; killing it')
                self.signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        # Children of a leader that exited (prefork pool processes) still hold its group id.
        groups = {proc.pid: name for name, proc in self.procs}
        while any(alive for *_rest, alive, _rss in group_processes(groups)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, pid, _cpu, alive, _rss in group_processes(groups):
            if alive:
                log(f'{name} (pid {pid}) outlived its group leader; killing it')
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.procs = []


def answering(url: str) -> bool:
    try:
        return requests.get(f'{url}/eventmatch', timeout=2) is not None
    except requests.RequestException:
        return False


def log_ready(path: Path) -> bool:
    return ' ready.' in path.read_text(errors='replace')


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f':{parts.password}@', ':***@')
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def percentiles(values: list[float]) -> dict:
    """Nearest-rank p50, p95 and p99."""
    ordered = sorted(values)

    def rank(share: float):
        return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 1) if ordered else None

    return {'p50': rank(0.50), 'p95': rank(0.95), 'p99': rank(0.99)}


def count_log_problems(folder: Path) -> dict:
    """Lines that look like errors in each log in ``folder``."""
    pattern = re.compile(r'ERROR|CRITICAL|Traceback')
    return {
        path.name: sum(1 for line in path.read_text(errors='replace').splitlines() if pattern.search(line))
        for path in sorted(folder.glob('*.log'))
    }
