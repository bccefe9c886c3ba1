"""Side by side: the original pacifica-notifications 0.5.2, ours, and a do-nothing CherryPy app.

One run measures, on this machine and with the same clients and peers:

* ``original``: ``pacifica-notifications==0.5.2`` from PyPI, installed into its own virtualenv
  (cached in ``~/.cache/pacifica-notifications-bench/``), on PostgreSQL (database
  ``bench_orig``) and Redis db 7, run as its README says: ``pacifica-notifications`` and
  ``celery -A pacifica.notifications.tasks worker --loglevel=info`` (Celery's default pool);
* ``ours``: the package installed in this virtualenv (the working tree), on PostgreSQL
  (``bench_ours``) and Redis db 7: ``pacifica-notifications --no-worker`` plus
  ``celery -A pacifica.notifications.tasks worker --loglevel INFO`` (default pool and
  concurrency; ``--worker-args`` adds arguments);
* ``ours-embedded``: ours on its embedded default (SQLite and the filesystem broker in a
  temporary ``NOTIFICATIONS_DATA_DIR``, the server's own worker);
* ``baseline``: ``bench/donothing.py``, a CherryPy app answering every POST 200 (intake only).

Every measure starts its implementation afresh (new database, new queue) and stops it after.
The policy server and the target are ``bench/peers.py`` processes (stdlib HTTP servers with
keep-alive and TCP_NODELAY); the clients are threads here, one keep-alive ``http.client``
connection each.  Latency is the target's arrival time minus the client's send time (the same
monotonic clock).  Each measure prints one JSON line (implementation, measure, value, unit,
complete, conditions, details); the last line has the ratios the goals are stated in.

Measures (``--measures``, comma list; default all but ``memory``):

* ``peers``: the target's and policy server's own ceilings (requests/s, 8 clients);
* ``e2e`` -> ``e2e_deliveries_per_s``: 100 subscriptions of one user, 10 matching; a burst of
  300 events from 8 clients; deliveries / (first POST to last delivery); p50/p95 latency;
* ``paced`` -> ``paced_p50_ms``: the same at half the e2e rate (events/s = e2e/10/2) for 20 s;
* ``idle`` -> ``idle_one_event_ms``: one subscription, 20 events one at a time, p50;
* ``receive`` -> ``receive_per_s``: POST /receive for 10 s from 8 clients, the API alone;
* ``creates`` -> ``eventmatch_creates_per_s``: POST /eventmatch for 10 s from 8 clients;
* ``isolation``: 20 users' healthy subscriptions, 60 events; again with 2 more whose target
  hangs past the read timeout (10 s); healthy throughput and p50, and their ratios (ours; the
  original too with ``--isolation-original``: it has no timeouts, so it is slow to run);
* ``scale_out``: ours' e2e with one and then two worker processes, back to back;
* ``memory``: 10 minutes at 80% of the e2e rate with 1,000 subscriptions; RSS of every process.

The machine may be shared: before each start the run waits (``--quiet-wait``) until little runs
outside it, records per measure the CPU used by each of its processes, by PostgreSQL and Redis
and by everything else, and measures again once (``--noisy-retries``) a measure during which
more than ``--noisy-cpus`` CPUs were busy elsewhere; both lines are printed, the last one counts.

``--quick`` uses small counts for a smoke run.  Logs of everything started stay in a temporary
folder named on stderr and in the first JSON line.  Needs PostgreSQL on 127.0.0.1:5432 (user
postgres, trust) and Redis on 127.0.0.1:6379; everything started listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import http.client
import itertools
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import common
from common import Children, answering, count_log_problems, free_port, log, log_ready, percentiles, redact

common.TAG = 'compare'
REPO = common.BENCH.parent
BIN = Path(sys.executable).parent
SHIM = common.BENCH / 'orig_shim'
CACHE = Path(os.environ.get('PACIFICA_BENCH_CACHE', '~/.cache/pacifica-notifications-bench')).expanduser()
ORIG_VERSION = '0.5.2'
# celery[redis]: kombu's Redis transport imports `packaging`, which only that extra brings (the
# original's own Dockerfile installs 'celery[redis]' redis psycopg2 the same way).
ORIG_REQUIREMENTS = (f'pacifica-notifications=={ORIG_VERSION}', 'celery[redis]', 'psycopg2-binary')
ORIG_DB, OURS_DB = 'bench_orig', 'bench_ours'

IMPLEMENTATIONS = ('original', 'ours', 'ours-embedded', 'baseline')
SERVICES = ('original', 'ours', 'ours-embedded')
MEASURES = {
    'peers': 'peer_ceiling_per_s',
    'e2e': 'e2e_deliveries_per_s',
    'paced': 'paced_p50_ms',
    'idle': 'idle_one_event_ms',
    'receive': 'receive_per_s',
    'creates': 'eventmatch_creates_per_s',
    'isolation': 'isolation',
    'scale_out': 'scale_out',
    'memory': 'memory',
}
APPLIES = {
    'e2e': SERVICES,
    'paced': SERVICES,
    'idle': SERVICES,
    'receive': IMPLEMENTATIONS,
    'creates': SERVICES,
    'isolation': ('ours', 'original'),
    'scale_out': ('ours',),
    'memory': ('original', 'ours'),
}
# Settings of either implementation: an inherited value would change what is measured.
SETTINGS_ENV = {
    'NOTIFICATIONS_CONFIG',
    'NOTIFICATIONS_CPCONFIG',
    'NOTIFICATIONS_DATA_DIR',
    'PEEWEE_URL',
    'BROKER_URL',
    'BACKEND_URL',
    'POLICY_URL',
    'DEFAULT_USER',
    'USER_HEADER',
    'MAX_REQUEST_BYTES',
    'RETRY_SCHEDULE',
    'CONNECT_TIMEOUT',
    'READ_TIMEOUT',
    'MAX_LOGGED_BODY',
    'RECOVER_AFTER',
    'SWEEP_INTERVAL',
    'DATABASE_CONNECT_ATTEMPTS',
    'DATABASE_CONNECT_WAIT',
    'PYTHONPATH',
    'BENCH_ORIG_QUEUE',
}
READ_TIMEOUT = 10  # ours, for every run (it only matters for the hanging targets)
HANG_SECONDS = READ_TIMEOUT + 5
JSON_HEADERS = {'Content-Type': 'application/json'}
MATCHING = '$.data[*][?(@.destinationTable = "Files" and @.size < {n})]'
NOT_MATCHING = '$.data[*][?(@.destinationTable = "Nope{n}")]'
GOALS = {
    'e2e_ours_over_original': ('>=', 20.0),
    'receive_ours_over_baseline': ('>=', 0.8),
    'creates_ours_over_original': ('>=', 10.0),
    'paced_p50_ms_ours': ('<=', 300.0),
    'idle_p50_ms_ours': ('<=', 15.0),
    'isolation_throughput_ratio_ours': ('>=', 0.8),
    'isolation_p50_ratio_ours': ('<=', 2.0),
}


@dataclass
class Sizes:
    """Counts and time limits (seconds) of the measures."""

    e2e_events: int = 300
    e2e_subs: int = 100
    e2e_matching: int = 10
    clients: int = 8
    e2e_timeout: float = 600
    paced_seconds: float = 20
    paced_drain: float = 120
    idle_events: int = 20
    idle_gap: float = 0.5
    idle_timeout: float = 30
    intake_seconds: float = 10
    iso_healthy: int = 20
    iso_hanging: int = 2
    iso_events: int = 60
    iso_timeout: float = 300
    memory_seconds: float = 600
    memory_subs: int = 1000
    memory_drain: float = 120
    ceiling_seconds: float = 3


QUICK = Sizes(
    e2e_events=40,
    e2e_timeout=180,
    paced_seconds=6,
    paced_drain=60,
    idle_events=5,
    idle_gap=0.2,
    intake_seconds=3,
    iso_events=10,
    iso_timeout=60,
    memory_seconds=20,
    memory_subs=200,
    memory_drain=30,
    ceiling_seconds=1,
)


class Stop(Exception):
    """Raised to abandon a measure (it is reported as incomplete)."""


# --------------------------------------------------------------------------------------------
# HTTP clients


class Http:
    """One keep-alive HTTP/1.1 connection (TCP_NODELAY) to one server; reconnects as needed."""

    def __init__(self, url: str, timeout: float = 60):
        parts = urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname or '127.0.0.1', parts.port or 80, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, body) of one request; raises OSError or HTTPException when there is none."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.used = 0
            reused = self.used > 0
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server had closed meanwhile: once more, anew.
                self.close()
                if attempt or not reused:
                    raise
                continue
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            self.used += 1
            if resp.will_close:
                self.close()
            return resp.status, data
        raise AssertionError('unreachable')

    def json(self, method: str, path: str, payload=None, headers: dict | None = None):
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.request(method, path, body, {**JSON_HEADERS, **(headers or {})})
        return status, data


def sample_rss(children: Children, every: float, series: list, done: threading.Event) -> None:
    """Every ``every`` seconds until ``done``: the total RSS and each process's (MiB), with the time."""
    began = time.monotonic()
    while not done.wait(every):
        rss = children.memory()
        series.append(
            {
                't_s': round(time.monotonic() - began),
                'total': round(sum(p['rss_mib'] for p in rss), 1),
                'each': {f'{p["name"]}:{p["pid"]}': p['rss_mib'] for p in rss},
            }
        )


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Load:
    """What the clients of one load phase saw, merged."""

    sent: dict = field(default_factory=dict)  # marker -> monotonic send time, accepted only
    statuses: Counter = field(default_factory=Counter)
    errors: list = field(default_factory=list)
    receive_ms: list = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    client_cpu_s: float = 0.0
    stuck_clients: int = 0

    @property
    def accepted(self) -> int:
        return len(self.sent)

    @property
    def wall(self) -> float:
        return max(1e-6, self.ended - self.started)

    def merge(self, other: Load) -> None:
        self.sent.update(other.sent)
        self.statuses.update(other.statuses)
        self.errors.extend(other.errors)
        self.receive_ms.extend(other.receive_ms)

    def summary(self) -> dict:
        return {
            'requests': sum(self.statuses.values()) + len(self.errors),
            'accepted': self.accepted,
            'statuses': {str(k): v for k, v in sorted(self.statuses.items())},
            'errors': len(self.errors),
            'first_error': self.errors[0] if self.errors else None,
            'answer_ms': percentiles(self.receive_ms),
            'posting_s': round(self.wall, 2),
            'client_cpu_s': round(self.client_cpu_s, 2),
            'client_cpu_share_of_one_core': round(self.client_cpu_s / self.wall, 2),
            'stuck_clients': self.stuck_clients,
        }


Item = Callable[[int], tuple]  # key -> (marker, path, body, headers)


def drive(url: str, item: Item, clients: int, *, count: int = 0, duration: float = 0.0, rate: float = 0.0) -> Load:
    """Post from ``clients`` threads, each with its own keep-alive connection.

    ``count``: a burst of that many requests, all clients as fast as answered.  Otherwise
    ``duration`` seconds: back to back, or paced at ``rate`` requests/s in all (each client
    every clients/rate seconds, the clients staggered evenly).  A request is accepted on 2xx.
    """
    results = [Load() for _ in range(clients)]
    counter, lock, stop = itertools.count(), threading.Lock(), threading.Event()
    barrier = threading.Barrier(clients + 1)
    interval = clients / rate if rate else 0.0
    go = [0.0]

    def client(number: int) -> None:
        res, conn, n = results[number], Http(url), 0
        try:
            barrier.wait(timeout=60)
            due = go[0] + (number * interval / clients if interval else 0.0)
            end = go[0] + duration
            while not stop.is_set():
                if count:
                    with lock:
                        key = next(counter)
                    if key >= count:
                        break
                else:
                    if time.monotonic() >= end:
                        break
                    if interval:
                        if due >= end or stop.wait(max(0.0, due - time.monotonic())):
                            break
                        due += interval
                    key, n = number * 10_000_000 + n, n + 1
                marker, path, body, headers = item(key)
                sent = time.monotonic()
                try:
                    status, _data = conn.request('POST', path, body, headers)
                except (OSError, http.client.HTTPException) as exc:
                    res.errors.append(f'{type(exc).__name__}: {exc}')
                    continue
                res.receive_ms.append((time.monotonic() - sent) * 1000)
                res.statuses[status] += 1
                if 200 <= status < 300:
                    res.sent[marker] = sent
        except threading.BrokenBarrierError:
            res.errors.append('the clients did not start together')
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    merged = Load()
    cpu0 = cpu_self()
    go[0] = time.monotonic()
    barrier.wait(timeout=60)
    # Bounded: a burst gets 10 minutes, a timed phase its duration plus a minute.
    deadline = go[0] + (duration + 60 if not count else 600)
    try:
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        stop.set()
    merged.stuck_clients = sum(thread.is_alive() for thread in threads)
    merged.started, merged.ended = go[0], time.monotonic()
    merged.client_cpu_s = cpu_self() - cpu0
    for res in results:
        merged.merge(res)
    return merged


# --------------------------------------------------------------------------------------------
# Databases, broker keys, peers


class Postgres:
    """Databases named bench_* on the local server, created fresh and dropped after."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.base = base.rstrip('/')
        self.params = {
            'host': parts.hostname or '127.0.0.1',
            'port': parts.port or 5432,
            'user': parts.username or 'postgres',
            'password': parts.password,
        }
        self.created: set[str] = set()

    def url(self, name: str) -> str:
        return f'{self.base}/{name}'

    def _admin(self):
        import psycopg2

        conn = psycopg2.connect(dbname='postgres', connect_timeout=5, **self.params)
        conn.autocommit = True
        return conn

    def _drop(self, cur, name: str) -> None:
        cur.execute(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()',
            (name,),
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')

    def recreate(self, name: str) -> None:
        assert name.startswith('bench_'), name
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cur:
            self._drop(cur, name)
            cur.execute(f'CREATE DATABASE "{name}"')
        self.created.add(name)

    def drop(self, name: str) -> None:
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cur:
            self._drop(cur, name)
        self.created.discard(name)

    def stats(self, name: str) -> dict | None:
        """This database's sessions, transactions and time spent executing (it is fresh, so
        these are the instance's own; PostgreSQL flushes them about once a second)."""
        try:
            with contextlib.closing(self._admin()) as conn, conn.cursor() as cur:
                cur.execute(
                    'SELECT sessions, xact_commit, xact_rollback, round(active_time::numeric, 1) '
                    'FROM pg_stat_database WHERE datname = %s',
                    (name,),
                )
                row = cur.fetchone()
        except Exception as exc:  # noqa: BLE001 - a statistic that is missing is reported so
            return {'error': str(exc).strip()}
        if row is None:
            return None
        return {'sessions': row[0], 'commits': row[1], 'rollbacks': row[2], 'active_ms': float(row[3])}

    def count(self, name: str, table: str) -> int | None:
        import psycopg2

        try:
            with contextlib.closing(psycopg2.connect(dbname=name, connect_timeout=5, **self.params)) as conn:
                with conn.cursor() as cur:
                    cur.execute(f'SELECT count(*) FROM "{table}"')
                    return cur.fetchone()[0]
        except psycopg2.Error as exc:
            log(f'could not count {table} in {name}: {exc}'.strip())
            return None


class RedisKeys:
    """The keys this run adds to its Redis db, deleted after each implementation stops.

    Keys that were there when the run started are never touched (nothing shared is purged).
    """

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        # Keys named after an earlier run's queues are that run's, left by a run that was killed.
        stale = list(self.client.scan_iter(match='*bench-compare-*', count=1000))
        if stale:
            self.client.delete(*stale)
            log(f'deleted {len(stale)} key(s) left in {url} by an earlier run that was killed')
        self.before = set(self.client.scan_iter(count=1000))

    def cleanup(self) -> int:
        new = [key for key in self.client.scan_iter(count=1000) if key not in self.before]
        for start in range(0, len(new), 500):
            self.client.delete(*new[start : start + 500])
        return len(new)


class Peer:
    """A ``bench/peers.py`` process; its port is the first line it prints."""

    def __init__(self, children: Children, kind: str, *extra: str):
        self.kind = kind
        _proc, path = children.start(f'peer-{kind}', [sys.executable, str(common.BENCH / 'peers.py'), kind, *extra])
        deadline = time.monotonic() + 20
        while True:
            text = path.read_text(errors='replace')
            if text.startswith('PORT ') and '\n' in text:
                self.url = f'http://127.0.0.1:{int(text.split()[1])}'
                break
            children.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f'the {kind} peer did not start; see {path}')
            time.sleep(0.05)
        self.http = Http(self.url, timeout=30)

    def get(self, path: str) -> dict:
        status, data = self.http.request('GET', path)
        if status != 200:
            raise RuntimeError(f'{self.kind} peer answered {status} to {path}')
        return json.loads(data)

    def count(self) -> int:
        return self.get('/__bench/count')['count']


class Arrivals:
    """The target's record of deliveries, fetched incrementally."""

    def __init__(self, target: Peer):
        self.target = target
        self.items: list[tuple[float, str, str, str]] = []  # (time, path, webhook-id, eventID)

    def poll(self) -> int:
        got = self.target.get(f'/__bench/arrivals?since={len(self.items)}')
        self.items.extend(tuple(item) for item in got['arrivals'])
        return len(self.items)


@dataclass
class Deliveries:
    """First arrival of each expected (path, eventID) pair, and what else arrived."""

    first: dict = field(default_factory=dict)
    duplicates: int = 0
    other: Counter = field(default_factory=Counter)  # other paths, for the events of this measure
    complete: bool = False
    stopped: float = 0.0
    error: str | None = None

    @property
    def last(self) -> float | None:
        return max(self.first.values(), default=None)


# --------------------------------------------------------------------------------------------
# Implementations


@dataclass
class Instance:
    kind: str
    seq: int
    folder: Path
    children: Children
    url: str = ''
    db: str | None = None
    data_dir: Path | None = None
    conditions: dict = field(default_factory=dict)


def code_digest() -> str:
    """A digest of our package's source as it is now (the tree may change during a run)."""
    digest = hashlib.sha256()
    for path in sorted((REPO / 'pacifica').rglob('*.py')):
        digest.update(str(path.relative_to(REPO)).encode() + b'\0' + path.read_bytes())
    return digest.hexdigest()[:12]


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ['git', '-C', str(REPO), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f'unavailable: {exc}'


def versions(python: Path, names: tuple[str, ...]) -> dict:
    code = (
        'import json, sys\nfrom importlib import metadata\nout = {}\n'
        'for name in sys.argv[1:]:\n'
        '    try:\n        out[name] = metadata.version(name)\n'
        '    except metadata.PackageNotFoundError:\n        out[name] = None\n'
        'print(json.dumps(out))'
    )
    try:
        return json.loads(
            subprocess.run(
                # -I and cwd /: not this checkout's own egg-info, which the current folder would show.
                [str(python), '-I', '-c', code, *names],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                cwd='/',
            ).stdout
        )
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return {'error': str(exc)}


PACKAGES = ('pacifica-notifications', 'celery', 'kombu', 'peewee', 'CherryPy', 'cheroot', 'redis', 'psycopg2-binary')


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.sizes: Sizes = QUICK if args.quick else Sizes()
        if args.e2e_timeout:
            self.sizes.e2e_timeout = args.e2e_timeout
        if args.memory_seconds:
            self.sizes.memory_seconds = args.memory_seconds
        self.id = uuid.uuid4().hex[:8]
        self.folder = Path(tempfile.mkdtemp(prefix=f'bench-compare-{self.id}-'))
        self.seq = 0
        self.attempt = 1
        self.values: dict[tuple[str, str], dict] = {}
        self.records: list[dict] = []
        self.pg = Postgres(args.pg_url)
        self.redis: RedisKeys | None = None
        self.peers_children = Children(self.folder, {})
        self.policy: Peer | None = None
        self.target: Peer | None = None
        self.arrivals: Arrivals | None = None
        self.orig_venv: Path | None = None
        self.lock_file = None
        self.base_env = {
            k: v
            for k, v in os.environ.items()
            if k not in SETTINGS_ENV and not k.startswith(('CELERY_', 'TEST_PEEWEE', 'TEST_BROKER'))
        }
        self.base_env['PYTHONUNBUFFERED'] = '1'
        self.peers_children.env = self.base_env
        template = json.loads(common.FIXTURE.read_text(encoding='utf-8'))
        self.template = template

    # ---- output

    def emit(self, record: dict) -> None:
        self.records.append(record)
        line = json.dumps(record, sort_keys=False)
        print(line, flush=True)
        if self.args.json_out:
            with open(self.args.json_out, 'a', encoding='utf-8') as out:
                out.write(line + '\n')

    # ---- set-up and tear-down

    def prepare(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        self.lock_file = open(CACHE / 'compare.lock', 'w')  # held for the whole run
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(
                f'compare: another bench/compare.py run holds {CACHE / "compare.lock"} '
                '(they share database names); wait for it'
            ) from None
        if self.args.json_out:
            Path(self.args.json_out).write_text('')
        log(f'run {self.id}; logs in {self.folder}')
        selected = self.args.only
        header = {
            'implementation': 'run',
            'measure': 'run_info',
            'run': self.id,
            'started_utc': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'git_commit': git('rev-parse', 'HEAD'),
            'git_status_short_pacifica': git('status', '--short', 'pacifica').splitlines(),
            'ours_code_digest': code_digest(),
            'quick': self.args.quick,
            'implementations': selected,
            'measures': self.args.measures,
            'worker_args': self.args.worker_args,
            'machine': {
                'cpus': os.cpu_count(),
                'python': platform.python_version(),
                'kernel': platform.release(),
                'load_average_1_5_15': [round(x, 2) for x in os.getloadavg()],
            },
            'ours_versions': versions(Path(sys.executable), PACKAGES),
            'logs': str(self.folder),
        }
        if 'original' in selected and set(self.args.measures) - {'peers'}:
            self.orig_venv = self.ensure_original()
            header['original_versions'] = versions(self.orig_venv / 'bin' / 'python', PACKAGES)
            header['original_venv'] = str(self.orig_venv)
        self.emit(header)
        self.check_servers()
        self.redis = RedisKeys(self.args.redis_url)
        self.policy = Peer(self.peers_children, 'policy')
        self.target = Peer(self.peers_children, 'target', '--hang-seconds', str(HANG_SECONDS))
        self.arrivals = Arrivals(self.target)
        log(f'policy peer {self.policy.url}, target peer {self.target.url}')

    def check_servers(self) -> None:
        try:
            with contextlib.closing(self.pg._admin()):
                pass
        except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
            raise SystemExit(f'compare: cannot reach PostgreSQL at {redact(self.args.pg_url)}: {exc}'.strip()) from None
        import redis

        try:
            redis.Redis.from_url(self.args.redis_url, socket_connect_timeout=5).ping()
        except redis.RedisError as exc:
            raise SystemExit(f'compare: cannot reach Redis at {self.args.redis_url}: {exc}') from None

    def ensure_original(self) -> Path:
        """The 0.5.2 virtualenv, made once and kept in the cache."""
        root = CACHE / f'original-{ORIG_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}'
        marker = root / 'bench-complete.json'
        if marker.exists() and (root / 'bin' / 'pacifica-notifications').exists():
            log(f'original {ORIG_VERSION}: cached virtualenv {root}')
            return root
        shutil.rmtree(root, ignore_errors=True)
        out_path = self.folder / 'original-install.log'
        log(f'original {ORIG_VERSION}: making a virtualenv in {root} (log: {out_path})')
        with open(out_path, 'ab') as out:
            try:
                subprocess.run(
                    [sys.executable, '-m', 'venv', str(root)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=300,
                    check=True,
                )
                subprocess.run(
                    [str(root / 'bin' / 'python'), '-m', 'pip', 'install', '--no-input', *ORIG_REQUIREMENTS],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=900,
                    check=True,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                shutil.rmtree(root, ignore_errors=True)
                raise RuntimeError(f'installing the original failed ({exc}); see {out_path}') from None
        freeze = subprocess.run(
            [str(root / 'bin' / 'python'), '-m', 'pip', 'freeze'],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        ).stdout
        marker.write_text(json.dumps({'requirements': ORIG_REQUIREMENTS, 'freeze': freeze.splitlines()}, indent=1))
        return root

    def close(self) -> None:
        self.peers_children.stop_all(grace=10)
        for name in sorted(self.pg.created):
            try:
                self.pg.drop(name)
                log(f'dropped database {name}')
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
                log(f'could not drop database {name}: {exc}')
        self.cleanup_redis()
        if self.lock_file is not None:
            self.lock_file.close()

    def cleanup_redis(self) -> None:
        if self.redis is None:
            return
        try:
            removed = self.redis.cleanup()
            if removed:
                log(f'deleted {removed} key(s) this run made in {self.args.redis_url}')
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
            log(f'could not clean Redis keys: {exc}')

    # ---- implementations

    @contextlib.contextmanager
    def instance(self, kind: str, label: str, *, workers: int = 1, api_only: bool = False):
        """Start ``kind`` afresh (new database, new queue), yield it, stop it and clean up."""
        self.seq += 1
        folder = self.folder / f'{self.seq:02d}-{kind}-{label}'
        folder.mkdir()
        inst = Instance(kind, self.seq, folder, Children(folder, self.base_env))
        quiet = self.wait_quiet()
        started = time.monotonic()
        try:
            if kind == 'original':
                self._start_original(inst, 0 if api_only else workers)
            elif kind == 'ours':
                self._start_ours(inst, 0 if api_only else workers)
            elif kind == 'ours-embedded':
                self._start_embedded(inst, not api_only)
            elif kind == 'baseline':
                self._start_baseline(inst)
            else:
                raise ValueError(kind)
            inst.children.expected = Counter(name for name, _cpu, live in inst.children.processes() if live)
            inst.conditions['processes'] = dict(inst.children.expected)
            inst.conditions['machine_before'] = quiet
            log(f'{kind} up at {inst.url} in {time.monotonic() - started:.1f}s ({folder.name})')
            yield inst
        finally:
            inst.children.stop_all(grace=20)
            problems = {k: v for k, v in count_log_problems(folder).items() if v}
            if problems:
                log(f'{kind}: lines with ERROR/Traceback in its logs: {problems} ({folder})')
            if inst.db:
                try:
                    self.pg.drop(inst.db)
                except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
                    log(f'could not drop database {inst.db}: {exc}')
            if inst.data_dir is not None:
                shutil.rmtree(inst.data_dir, ignore_errors=True)
            self.cleanup_redis()

    def wait_quiet(self) -> dict:
        """Wait until what runs outside this benchmark (with nothing of ours started but the
        peers) uses under ``--quiet-cores`` CPUs for 3 s in a row, at most ``--quiet-wait`` s."""
        started, calm, noted = time.monotonic(), 0, False
        while True:
            machine0, peers0, self0 = machine_busy_cpu(), sum(self.peers_children.cpu_seconds().values()), cpu_self()
            time.sleep(1.0)
            ours = sum(self.peers_children.cpu_seconds().values()) - peers0 + cpu_self() - self0
            other = max(0.0, machine_busy_cpu() - machine0 - ours)
            calm = calm + 1 if other < self.args.quiet_cores else 0
            waited = time.monotonic() - started
            if calm >= 3 or waited >= self.args.quiet_wait:
                quiet = calm >= 3
                if not quiet:
                    log(f'  the machine is still busy ({other:.2f} CPUs outside this run); measuring anyway')
                return {'quiet': quiet, 'waited_s': round(waited, 1), 'other_cpus_last_s': round(other, 2)}
            if not calm and not noted:
                busy = f'{other:.2f} CPUs busy outside this run'
                log(f'  waiting up to {self.args.quiet_wait:g}s for a quiet machine ({busy})')
                noted = True

    def _run_once(self, inst: Instance, name: str, args: list[str], env: dict) -> None:
        path = inst.folder / f'{name}.log'
        with open(path, 'ab') as out:
            try:
                subprocess.run(
                    args, env=env, cwd=inst.folder, stdout=out, stderr=subprocess.STDOUT, timeout=180, check=True
                )
            except subprocess.CalledProcessError as exc:
                raise RuntimeError(f'{name} failed with status {exc.returncode}; see {path}') from None
            except subprocess.TimeoutExpired:
                raise RuntimeError(f'{name} did not finish within 180s; see {path}') from None

    def _wait_up(self, inst: Instance, workers: list[Path]) -> None:
        inst.children.wait_for(f'{inst.kind} to answer', lambda: answering(inst.url), 90)
        for path in workers:
            inst.children.wait_for(f'{path.stem} to be ready', lambda path=path: log_ready(path), 120)

    def _start_original(self, inst: Instance, workers: int) -> None:
        assert self.orig_venv is not None
        venv_bin = self.orig_venv / 'bin'
        queue = f'bench-compare-{self.id}-{inst.seq}'
        port = free_port()
        cpconfig = inst.folder / 'cpconfig.ini'
        # The sdist's server.conf, on 127.0.0.1 and our port: its [global] overrides -p/-a (0.5.2
        # applies the file after them), so the address and port must be in the file too.
        cpconfig.write_text(
            '[global]\n'
            'log.screen: True\n'
            f"log.access_file: '{inst.folder / 'access.log'}'\n"
            f"log.error_file: '{inst.folder / 'error.log'}'\n"
            "server.socket_host: '127.0.0.1'\n"
            f'server.socket_port: {port}\n'
            'engine.autoreload.on: False\n\n'
            '[/]\n'
            'request.dispatch: cherrypy.dispatch.MethodDispatcher()\n'
        )
        self.pg.recreate(ORIG_DB)
        inst.db = ORIG_DB
        env = {
            **self.base_env,
            'PEEWEE_URL': self.pg.url(ORIG_DB),
            'BROKER_URL': self.args.redis_url,
            'POLICY_URL': self.policy.url,
            'DATABASE_CONNECT_ATTEMPTS': '3',
            'DATABASE_CONNECT_WAIT': '2',
            'NOTIFICATIONS_CONFIG': str(inst.folder / 'no-such-config.ini'),
            'NOTIFICATIONS_CPCONFIG': str(cpconfig),
            'PYTHONPATH': str(SHIM),
            'BENCH_ORIG_QUEUE': queue,
        }
        self._run_once(inst, 'dbsync', [str(venv_bin / 'pacifica-notifications-cmd'), 'dbsync'], env)
        inst.url = f'http://127.0.0.1:{port}'
        inst.children.start(
            'server',
            [str(venv_bin / 'pacifica-notifications'), '-p', str(port), '-a', '127.0.0.1', '--cpconfig', str(cpconfig)],
            env=env,
            cwd=inst.folder,
        )
        worker_args = shlex.split(self.args.orig_worker_args)
        logs = []
        for number in range(1, workers + 1):
            _proc, path = inst.children.start(
                f'worker-{number}',
                [
                    str(venv_bin / 'celery'),
                    '-A',
                    'pacifica.notifications.tasks',
                    'worker',
                    '--loglevel=info',
                    '-n',
                    f'orig{number}-{self.id}@%h',
                    *worker_args,
                ],
                env=env,
                cwd=inst.folder,
            )
            logs.append(path)
        self._wait_up(inst, logs)
        inst.conditions = {
            'version': ORIG_VERSION,
            'db': redact(env['PEEWEE_URL']),
            'broker': env['BROKER_URL'],
            'backend': 'rpc:// (its default)',
            'queue': queue,
            'workers': workers,
            'worker_command': ' '.join(
                ['celery -A pacifica.notifications.tasks worker --loglevel=info', *worker_args]
                + ([] if worker_args else ['(default pool: prefork, concurrency = CPUs)'])
            ),
            'timeouts': 'none (0.5.2 passes no timeout to requests)',
        }

    def _ours_env(self, inst: Instance) -> dict:
        inst.data_dir = inst.folder / 'data'
        return {
            **self.base_env,
            'POLICY_URL': self.policy.url,
            'CELERY_QUEUE': f'bench-compare-{self.id}-{inst.seq}',
            'READ_TIMEOUT': str(READ_TIMEOUT),
            'DATABASE_CONNECT_ATTEMPTS': '3',
            'DATABASE_CONNECT_WAIT': '2',
            'NOTIFICATIONS_DATA_DIR': str(inst.data_dir),
        }

    def _start_ours(self, inst: Instance, workers: int) -> None:
        env = self._ours_env(inst)
        self.pg.recreate(OURS_DB)
        inst.db = OURS_DB
        env.update({'PEEWEE_URL': self.pg.url(OURS_DB), 'BROKER_URL': self.args.redis_url})
        digest = code_digest()
        self._run_once(inst, 'dbsync', [str(BIN / 'pacifica-notifications-cmd'), 'dbsync'], env)
        port = free_port()
        inst.url = f'http://127.0.0.1:{port}'
        inst.children.start(
            'server',
            [str(BIN / 'pacifica-notifications'), '-p', str(port), '-a', '127.0.0.1', '--no-worker'],
            env=env,
            cwd=inst.folder,
        )
        worker_args = shlex.split(self.args.worker_args)
        logs = []
        for number in range(1, workers + 1):
            _proc, path = inst.children.start(
                f'worker-{number}',
                [
                    str(BIN / 'celery'),
                    '-A',
                    'pacifica.notifications.tasks',
                    'worker',
                    '--loglevel',
                    'INFO',
                    '-n',
                    f'ours{number}-{self.id}@%h',
                    *worker_args,
                ],
                env=env,
                cwd=inst.folder,
            )
            logs.append(path)
        self._wait_up(inst, logs)
        inst.conditions = {
            'code_digest': digest,
            'db': redact(env['PEEWEE_URL']),
            'broker': env['BROKER_URL'],
            'queue': env['CELERY_QUEUE'],
            'workers': workers,
            'worker_command': ' '.join(
                ['celery -A pacifica.notifications.tasks worker --loglevel INFO', *worker_args]
                + ([] if worker_args else ['(default pool: WORKER_POOL=threads, WORKER_CONCURRENCY=8)'])
            ),
            'read_timeout_s': READ_TIMEOUT,
        }

    def _start_embedded(self, inst: Instance, worker: bool) -> None:
        env = self._ours_env(inst)
        digest = code_digest()
        port = free_port()
        inst.url = f'http://127.0.0.1:{port}'
        _proc, path = inst.children.start(
            'server',
            [
                str(BIN / 'pacifica-notifications'),
                '-p',
                str(port),
                '-a',
                '127.0.0.1',
                *([] if worker else ['--no-worker']),
            ],
            env=env,
            cwd=inst.folder,
        )
        self._wait_up(inst, [path] if worker else [])
        inst.conditions = {
            'code_digest': digest,
            'db': 'embedded SQLite (NOTIFICATIONS_DATA_DIR in a temporary folder)',
            'broker': 'embedded filesystem',
            'workers': 'embedded (the server starts it)' if worker else 0,
            'read_timeout_s': READ_TIMEOUT,
        }

    def _start_baseline(self, inst: Instance) -> None:
        port = free_port()
        inst.url = f'http://127.0.0.1:{port}'
        inst.children.start(
            'server', [sys.executable, str(common.BENCH / 'donothing.py'), '--port', str(port)], cwd=inst.folder
        )
        self._wait_up(inst, [])
        inst.conditions = {'app': 'bench/donothing.py: CherryPy, default thread pool, answers 200 {"status": "ok"}'}

    # ---- helpers for measures

    def create_subscriptions(self, inst: Instance, specs: list[tuple[str, str, str]]) -> list[str]:
        """Create (user, jsonpath, target path) subscriptions; return their uuids."""
        conn, uuids = Http(inst.url, timeout=60), []
        try:
            for number, (user, jsonpath, path) in enumerate(specs):
                status, data = conn.json(
                    'POST',
                    '/eventmatch',
                    {'name': f'bench {self.id} {number}', 'jsonpath': jsonpath, 'target_url': self.target.url + path},
                    {'Http-Remote-User': user},
                )
                if not 200 <= status < 300:
                    raise RuntimeError(f'creating a subscription: {status} {data[:300]!r}')
                uuids.append(json.loads(data)['uuid'])
        finally:
            conn.close()
        return uuids

    def event_item(self, tag: str) -> Item:
        template, source = self.template, f'/bench/compare/{self.id}'

        def item(key: int) -> tuple:
            marker = f'{self.id}-{tag}-{key}'
            body = json.dumps({**template, 'eventID': marker, 'source': source}).encode()
            return marker, '/receive', body, JSON_HEADERS

        return item

    def wait_deliveries(
        self, inst: Instance, start: int, markers: dict, paths: list[str], deadline: float, what: str
    ) -> Deliveries:
        """Wait until each of ``markers`` reached each of ``paths``, or until ``deadline``."""
        result, expected = Deliveries(), len(markers) * len(paths)
        wanted, scanned = set(paths), start
        next_check = time.monotonic()
        next_note = next_check + 10
        while True:
            now = time.monotonic()
            count = self.arrivals.poll()
            for at, path, _webhook_id, marker in self.arrivals.items[scanned:count]:
                if marker not in markers:
                    continue
                if path not in wanted:
                    result.other[path.rsplit('/', 1)[0]] += 1
                elif (path, marker) in result.first:
                    result.duplicates += 1
                else:
                    result.first[(path, marker)] = at
            scanned = count
            if len(result.first) >= expected:
                result.complete = True
                break
            if now > deadline:
                log(f'  {what}: gave up waiting: {len(result.first)}/{expected} delivered')
                break
            if now >= next_check:
                try:
                    inst.children.check()
                except RuntimeError as exc:
                    result.error = str(exc)
                    log(f'  {what}: {exc}')
                    break
                next_check = now + 2
            if now >= next_note:
                log(f'  {what}: {len(result.first)}/{expected} delivered')
                next_note = now + 10
            time.sleep(0.1)
        result.stopped = time.monotonic()
        return result

    def snapshot(self, inst: Instance) -> tuple:
        return (
            time.monotonic(),
            inst.children.cpu_seconds(),
            self.peers_children.cpu_seconds(),
            cpu_self(),
            machine_busy_cpu(),
            shared_servers_cpu(),
        )

    def usage(self, inst: Instance, snap: tuple) -> dict:
        wall, service0, peers0, self0, machine0, servers0 = snap
        service1, peers1 = inst.children.cpu_seconds(), self.peers_children.cpu_seconds()
        service = {name: round(cpu - service0.get(name, 0), 2) for name, cpu in service1.items()}
        peers = {name: round(cpu - peers0.get(name, 0), 2) for name, cpu in peers1.items()}
        bench = cpu_self() - self0
        machine = machine_busy_cpu() - machine0
        servers = {name: cpu - servers0.get(name, 0.0) for name, cpu in shared_servers_cpu().items()}
        outside = machine - sum(service.values()) - sum(peers.values()) - bench
        extra = {}
        if inst.db:
            extra['postgres_database_stats'] = self.pg.stats(inst.db)
        return {
            'wall_s': round(time.monotonic() - wall, 2),
            'service_cpu_s': service,
            'service_cpu_total_s': round(sum(service.values()), 2),
            'peers_cpu_s': peers,
            'bench_cpu_s': round(bench, 2),
            'machine_busy_cpu_s': round(machine, 2),
            # PostgreSQL and Redis working for the service, and anything else running here.
            'outside_our_processes_cpu_s': round(outside, 2),
            # All of PostgreSQL's and Redis's processes (other users of them too).
            'postgres_cpu_s': round(servers['postgres'], 2),
            'redis_cpu_s': round(servers['redis'], 2),
            'other_cpu_s': round(outside - sum(servers.values()), 2),
            **extra,
        }

    def record(self, impl: str, measure: str, value, unit: str, complete: bool, conditions: dict, **details) -> dict:
        rec = {
            'implementation': impl,
            'measure': measure,
            'value': None if value is None else round(value, 3),
            'unit': unit,
            'complete': complete,
            'conditions': conditions,
            **details,
        }
        rec['outside_load_cpus'] = outside_load(rec)
        if self.attempt > 1:
            rec['attempt'] = self.attempt
        self.values[(impl, measure)] = rec
        self.emit(rec)
        return rec

    # ---- measures

    def measure_peers(self) -> None:
        """The peers' own ceilings, with the clients used for the services."""
        body = json.dumps({**self.template, 'eventID': 'ceiling'}).encode()
        cases = [
            ('target', self.target.url, JSON_HEADERS, 'keep-alive'),
            ('target', self.target.url, {**JSON_HEADERS, 'Connection': 'close'}, 'new connection per request'),
            ('policy', self.policy.url, JSON_HEADERS, 'keep-alive'),
        ]
        for peer, url, headers, mode in cases:
            load = drive(
                url,
                lambda key, headers=headers: (str(key), '/__bench/sink', body, headers),
                self.sizes.clients,
                duration=self.sizes.ceiling_seconds,
            )
            self.record(
                f'peer-{peer}',
                'peer_ceiling_per_s',
                load.accepted / load.wall,
                'requests/s',
                not load.errors,
                {'clients': self.sizes.clients, 'connections': mode, 'seconds': self.sizes.ceiling_seconds},
                load=load.summary(),
            )

    def e2e(self, impl: str, label: str, workers: int = 1) -> dict:
        """One e2e burst on a fresh instance; the fields of an e2e record."""
        sizes = self.sizes
        with self.instance(impl, label, workers=workers) as inst:
            user = f'bench-{self.id}-{label}'
            specs = [
                (
                    user,
                    (MATCHING if n < sizes.e2e_matching else NOT_MATCHING).format(n=1000 + n),
                    f'/hook/{inst.seq}/{n}',
                )
                for n in range(sizes.e2e_subs)
            ]
            self.create_subscriptions(inst, specs)
            paths = [path for _user, _jp, path in specs[: sizes.e2e_matching]]
            start, policy0, snap = self.arrivals.poll(), self.policy.count(), self.snapshot(inst)
            log(f'  {impl}: a burst of {sizes.e2e_events} events from {sizes.clients} clients')
            load = drive(inst.url, self.event_item(label), sizes.clients, count=sizes.e2e_events)
            got = self.wait_deliveries(
                inst, start, load.sent, paths, load.started + sizes.e2e_timeout, f'{impl} {label}'
            )
            usage, policy_calls = self.usage(inst, snap), self.policy.count() - policy0
            conditions = {
                **inst.conditions,
                'events': sizes.e2e_events,
                'clients': sizes.clients,
                'subscriptions': sizes.e2e_subs,
                'matching': sizes.e2e_matching,
                'users': 1,
                'timeout_s': sizes.e2e_timeout,
            }
        expected = load.accepted * len(paths)
        delivered = len(got.first)
        complete = got.complete and load.accepted == sizes.e2e_events
        end = got.last if got.complete and got.last else got.stopped
        latencies = [(at - load.sent[marker]) * 1000 for (_path, marker), at in got.first.items()]
        return {
            'rate': delivered / max(1e-6, end - load.started) if delivered else 0.0,
            'complete': complete,
            'conditions': conditions,
            'details': {
                'latency_ms': percentiles(latencies),
                'expected': expected,
                'delivered': delivered,
                'duplicates': got.duplicates,
                'unexpected': dict(got.other),
                'elapsed_s': round(end - load.started, 2),
                'policy_calls': policy_calls,
                'receive': load.summary(),
                'usage': usage,
                **({'error': got.error} if got.error else {}),
            },
        }

    def measure_e2e(self, impl: str) -> None:
        out = self.e2e(impl, 'e2e')
        self.record(
            impl,
            'e2e_deliveries_per_s',
            out['rate'],
            'deliveries/s',
            out['complete'],
            out['conditions'],
            **out['details'],
        )

    def measure_paced(self, impl: str) -> None:
        sizes = self.sizes
        e2e = self.values.get((impl, 'e2e_deliveries_per_s'))
        if e2e and e2e['value']:
            rate, source = e2e['value'] / sizes.e2e_matching / 2, 'e2e_deliveries_per_s / matching / 2'
        else:
            rate, source = 1.0, 'fallback (no e2e figure in this run)'
        with self.instance(impl, 'paced') as inst:
            user = f'bench-{self.id}-paced'
            specs = [
                (
                    user,
                    (MATCHING if n < sizes.e2e_matching else NOT_MATCHING).format(n=1000 + n),
                    f'/hook/{inst.seq}/{n}',
                )
                for n in range(sizes.e2e_subs)
            ]
            self.create_subscriptions(inst, specs)
            paths = [path for _user, _jp, path in specs[: sizes.e2e_matching]]
            start, snap = self.arrivals.poll(), self.snapshot(inst)
            log(f'  {impl}: {rate:.2f} events/s for {sizes.paced_seconds:g}s')
            load = drive(inst.url, self.event_item('paced'), sizes.clients, duration=sizes.paced_seconds, rate=rate)
            got = self.wait_deliveries(inst, start, load.sent, paths, load.ended + sizes.paced_drain, f'{impl} paced')
            usage = self.usage(inst, snap)
            conditions = {
                **inst.conditions,
                'events_per_s': round(rate, 3),
                'rate_source': source,
                'seconds': sizes.paced_seconds,
                'clients': sizes.clients,
                'subscriptions': sizes.e2e_subs,
                'matching': sizes.e2e_matching,
                'users': 1,
                'drain_limit_s': sizes.paced_drain,
            }
        latencies = [(at - load.sent[marker]) * 1000 for (_path, marker), at in got.first.items()]
        stats = percentiles(latencies)
        self.record(
            impl,
            'paced_p50_ms',
            stats['p50'],
            'ms',
            got.complete and load.accepted > 0,
            conditions,
            latency_ms=stats,
            achieved_events_per_s=round(load.accepted / sizes.paced_seconds, 3),
            expected=load.accepted * len(paths),
            delivered=len(got.first),
            duplicates=got.duplicates,
            drain_s=round(max(0.0, (got.last or load.ended) - load.ended), 2),
            receive=load.summary(),
            usage=usage,
            **({'error': got.error} if got.error else {}),
        )

    def measure_idle(self, impl: str) -> None:
        sizes = self.sizes
        with self.instance(impl, 'idle') as inst:
            path = f'/hook/{inst.seq}/idle'
            self.create_subscriptions(inst, [(f'bench-{self.id}-idle', MATCHING.format(n=1000), path)])
            time.sleep(1.0)  # let the start settle
            conn, item, samples, misses, errors = Http(inst.url), self.event_item('idle'), [], 0, []
            snap = self.snapshot(inst)
            try:
                for number in range(sizes.idle_events):
                    start = self.arrivals.poll()
                    marker, route, body, headers = item(number)
                    sent = time.monotonic()
                    try:
                        status, data = conn.request('POST', route, body, headers)
                    except (OSError, http.client.HTTPException) as exc:
                        errors.append(f'{type(exc).__name__}: {exc}')
                        continue
                    if not 200 <= status < 300:
                        errors.append(f'{status} {data[:200]!r}')
                        continue
                    arrived = self._wait_one(inst, start, path, marker, sent + sizes.idle_timeout)
                    if arrived is None:
                        misses += 1
                    else:
                        samples.append((arrived - sent) * 1000)
                    time.sleep(sizes.idle_gap)
            finally:
                conn.close()
            usage = self.usage(inst, snap)
            conditions = {
                **inst.conditions,
                'events': sizes.idle_events,
                'subscriptions': 1,
                'gap_s': sizes.idle_gap,
                'one_at_a_time': True,
            }
        stats = percentiles(samples)
        self.record(
            impl,
            'idle_one_event_ms',
            stats['p50'],
            'ms',
            not misses and not errors and len(samples) == sizes.idle_events,
            conditions,
            latency_ms=stats,
            samples_ms=[round(s, 1) for s in samples],
            missing=misses,
            errors=errors[:5],
            usage=usage,
        )

    def _wait_one(self, inst: Instance, start: int, path: str, marker: str, deadline: float) -> float | None:
        scanned, next_check = start, time.monotonic() + 2
        while time.monotonic() < deadline:
            count = self.arrivals.poll()
            for at, got_path, _webhook_id, got_marker in self.arrivals.items[scanned:count]:
                if got_marker == marker and got_path == path:
                    return at
            scanned = count
            if time.monotonic() > next_check:
                inst.children.check()
                next_check = time.monotonic() + 2
            time.sleep(0.005)
        return None

    def measure_receive(self, impl: str) -> None:
        sizes = self.sizes
        with self.instance(impl, 'receive', api_only=True) as inst:
            snap = self.snapshot(inst)
            log(f'  {impl}: POST /receive from {sizes.clients} clients for {sizes.intake_seconds:g}s')
            load = drive(inst.url, self.event_item('receive'), sizes.clients, duration=sizes.intake_seconds)
            usage = self.usage(inst, snap)
            logged = None
            if impl == 'ours':
                logged = self.pg.count(OURS_DB, 'eventlog')
            elif impl == 'ours-embedded':
                logged = sqlite_count(inst.data_dir / 'notifications.sqlite3', 'eventlog')
            conditions = {
                **inst.conditions,
                'clients': sizes.clients,
                'seconds': sizes.intake_seconds,
                'workers_running': 0 if impl != 'baseline' else None,
                'subscriptions': 0,
                'committed_before_answer': {
                    'original': False,  # 0.5.2 only queues the event; its worker logs it
                    'ours': True,
                    'ours-embedded': True,
                    'baseline': None,
                }[impl],
            }
        details = {'receive': load.summary(), 'usage': usage}
        if logged is not None:
            details['events_logged_in_db'] = logged
            details['every_accepted_event_logged'] = logged >= load.accepted
        self.record(
            impl,
            'receive_per_s',
            load.accepted / load.wall,
            'requests/s',
            not load.errors and not load.stuck_clients,
            conditions,
            **details,
        )

    def measure_creates(self, impl: str) -> None:
        sizes = self.sizes
        with self.instance(impl, 'creates', api_only=True) as inst:
            target = self.target.url

            def item(key: int) -> tuple:
                body = json.dumps(
                    {
                        'name': f'create {key}',
                        'jsonpath': NOT_MATCHING.format(n=key),
                        'target_url': f'{target}/created/{key}',
                    }
                ).encode()
                user = f'bench-{self.id}-c{key // 10_000_000}'
                return str(key), '/eventmatch', body, {**JSON_HEADERS, 'Http-Remote-User': user}

            snap = self.snapshot(inst)
            log(f'  {impl}: POST /eventmatch from {sizes.clients} clients for {sizes.intake_seconds:g}s')
            load = drive(inst.url, item, sizes.clients, duration=sizes.intake_seconds)
            usage = self.usage(inst, snap)
            conditions = {
                **inst.conditions,
                'clients': sizes.clients,
                'users': sizes.clients,
                'seconds': sizes.intake_seconds,
            }
        self.record(
            impl,
            'eventmatch_creates_per_s',
            load.accepted / load.wall,
            'creates/s',
            not load.errors and not load.stuck_clients,
            conditions,
            receive=load.summary(),
            usage=usage,
        )

    def isolation_phase(self, impl: str, hanging: int) -> dict:
        sizes = self.sizes
        label = f'isolation-{"hang" if hanging else "healthy"}'
        with self.instance(impl, label) as inst:
            specs = [
                (f'bench-{self.id}-iso{n}', MATCHING.format(n=1000 + n), f'/hook/{inst.seq}/{n}')
                for n in range(sizes.iso_healthy)
            ]
            specs += [
                (f'bench-{self.id}-isohang{n}', MATCHING.format(n=1000 + n), f'/hang/{inst.seq}/{n}')
                for n in range(hanging)
            ]
            self.create_subscriptions(inst, specs)
            paths = [path for _user, _jp, path in specs[: sizes.iso_healthy]]
            start, snap = self.arrivals.poll(), self.snapshot(inst)
            log(f'  {impl}: {sizes.iso_events} events, {sizes.iso_healthy} healthy + {hanging} hanging subscriptions')
            load = drive(inst.url, self.event_item(label), sizes.clients, count=sizes.iso_events)
            got = self.wait_deliveries(
                inst, start, load.sent, paths, load.started + sizes.iso_timeout, f'{impl} {label}'
            )
            usage = self.usage(inst, snap)
            conditions = inst.conditions
        delivered = len(got.first)
        end = got.last if got.complete and got.last else got.stopped
        latencies = [(at - load.sent[marker]) * 1000 for (_path, marker), at in got.first.items()]
        return {
            'healthy_deliveries_per_s': round(delivered / max(1e-6, end - load.started), 3) if delivered else 0.0,
            'latency_ms': percentiles(latencies),
            'complete': got.complete and load.accepted == sizes.iso_events,
            'expected': load.accepted * len(paths),
            'delivered': delivered,
            'hanging_arrivals': sum(n for prefix, n in got.other.items() if prefix.startswith('/hang')),
            'duplicates': got.duplicates,
            'elapsed_s': round(end - load.started, 2),
            'conditions': conditions,
            'usage': usage,
            **({'error': got.error} if got.error else {}),
        }

    def measure_isolation(self, impl: str) -> None:
        healthy = self.isolation_phase(impl, 0)
        hanging = self.isolation_phase(impl, self.sizes.iso_hanging)
        base_rate, base_p50 = healthy['healthy_deliveries_per_s'], healthy['latency_ms']['p50']
        ratio = hanging['healthy_deliveries_per_s'] / base_rate if base_rate else None
        p50_ratio = hanging['latency_ms']['p50'] / base_p50 if base_p50 and hanging['latency_ms']['p50'] else None
        conditions = {
            **healthy.pop('conditions'),
            'healthy_subscriptions': self.sizes.iso_healthy,
            'users': self.sizes.iso_healthy,
            'hanging_subscriptions': self.sizes.iso_hanging,
            'hang_s': HANG_SECONDS,
            'events': self.sizes.iso_events,
            'clients': self.sizes.clients,
            'timeout_s': self.sizes.iso_timeout,
        }
        hanging.pop('conditions')
        self.record(
            impl,
            'isolation',
            ratio,
            'healthy throughput with hanging / without',
            healthy['complete'] and hanging['complete'],
            conditions,
            p50_ratio=None if p50_ratio is None else round(p50_ratio, 3),
            healthy=healthy,
            with_hanging=hanging,
        )

    def measure_scale_out(self, impl: str) -> None:
        """One and two workers back to back (not the e2e figure: the tree may change meanwhile)."""
        one = self.e2e(impl, 'scale1', workers=1)
        two = self.e2e(impl, 'scale2', workers=2)
        digests = [one['conditions'].get('code_digest'), two['conditions'].get('code_digest')]
        ratio = two['rate'] / one['rate'] if one['rate'] else None
        self.record(
            impl,
            'scale_out',
            ratio,
            'x (two workers / one)',
            bool(one['complete'] and two['complete'] and digests[0] == digests[1]),
            {**two['conditions'], 'workers': '1 then 2', 'code_digests': digests},
            one_worker_deliveries_per_s=round(one['rate'], 3),
            two_workers_deliveries_per_s=round(two['rate'], 3),
            same_code=digests[0] == digests[1],
            one_worker=one['details'],
            two_workers=two['details'],
        )

    def measure_memory(self, impl: str) -> None:
        sizes = self.sizes
        matching = max(1, sizes.memory_subs // 10)
        e2e = self.values.get((impl, 'e2e_deliveries_per_s'))
        if e2e and e2e['value']:
            rate, source = 0.8 * e2e['value'] / matching, '0.8 x e2e_deliveries_per_s / matching'
        else:
            rate, source = 0.5, 'fallback (no e2e figure in this run)'
        rate = max(rate, 0.05)
        with self.instance(impl, 'memory') as inst:
            specs = [
                (
                    f'bench-{self.id}-mem{n % 10}',
                    (MATCHING if n < matching else NOT_MATCHING).format(n=1000 + n),
                    f'/hook/{inst.seq}/{n}',
                )
                for n in range(sizes.memory_subs)
            ]
            log(f'  {impl}: creating {sizes.memory_subs} subscriptions')
            self.create_subscriptions(inst, specs)
            paths = [path for _user, _jp, path in specs[:matching]]
            rss_start = inst.children.memory()
            start, snap = self.arrivals.poll(), self.snapshot(inst)
            log(f'  {impl}: {rate:.3f} events/s for {sizes.memory_seconds:g}s')
            series, done = [], threading.Event()
            sampler = threading.Thread(
                target=sample_rss, args=(inst.children, sizes.memory_seconds / 10, series, done), daemon=True
            )
            sampler.start()
            load = drive(inst.url, self.event_item('memory'), sizes.clients, duration=sizes.memory_seconds, rate=rate)
            done.set()
            sampler.join()
            rss_end = inst.children.memory()
            got = self.wait_deliveries(inst, start, load.sent, paths, load.ended + sizes.memory_drain, f'{impl} memory')
            usage = self.usage(inst, snap)
            conditions = {
                **inst.conditions,
                'subscriptions': sizes.memory_subs,
                'matching': matching,
                'users': 10,
                'events_per_s': round(rate, 3),
                'rate_source': source,
                'seconds': sizes.memory_seconds,
            }
        total = round(sum(p['rss_mib'] for p in rss_end), 1)
        latencies = [(at - load.sent[marker]) * 1000 for (_path, marker), at in got.first.items()]
        self.record(
            impl,
            'memory',
            total,
            'MiB RSS at the end (all processes)',
            got.complete,
            conditions,
            rss_total_start_mib=round(sum(p['rss_mib'] for p in rss_start), 1),
            rss_start=rss_start,
            rss_end=rss_end,
            rss_series_mib=series,
            rss_growth_second_half_mib=round(total - series[len(series) // 2]['total'], 1) if series else None,
            delivered=len(got.first),
            expected=load.accepted * len(paths),
            backlog_at_end_of_posting_s=round(max(0.0, (got.last or load.ended) - load.ended), 2),
            latency_ms=percentiles(latencies),
            receive=load.summary(),
            usage=usage,
        )

    # ---- ratios

    def ratios(self) -> dict:
        def value(impl: str, measure: str):
            rec = self.values.get((impl, measure))
            return None if rec is None else rec['value']

        def div(a, b):
            return round(a / b, 3) if a is not None and b else None

        iso = self.values.get(('ours', 'isolation'))
        found = {
            'e2e_ours_over_original': div(
                value('ours', 'e2e_deliveries_per_s'), value('original', 'e2e_deliveries_per_s')
            ),
            'receive_ours_over_baseline': div(value('ours', 'receive_per_s'), value('baseline', 'receive_per_s')),
            'creates_ours_over_original': div(
                value('ours', 'eventmatch_creates_per_s'), value('original', 'eventmatch_creates_per_s')
            ),
            'paced_p50_ms_ours': value('ours', 'paced_p50_ms'),
            'idle_p50_ms_ours': value('ours', 'idle_one_event_ms'),
            'isolation_throughput_ratio_ours': None if iso is None else iso['value'],
            'isolation_p50_ratio_ours': None if iso is None else iso['p50_ratio'],
        }
        out = {}
        for name, got in found.items():
            op, goal = GOALS[name]
            met = None if got is None else (got >= goal if op == '>=' else got <= goal)
            out[name] = {'value': got, 'goal': f'{op} {goal:g}', 'met': met}
        # For information (no goal): the embedded default, scale-out, the original's own.
        out['e2e_ours_embedded_over_original'] = {
            'value': div(value('ours-embedded', 'e2e_deliveries_per_s'), value('original', 'e2e_deliveries_per_s'))
        }
        out['receive_ours_embedded_over_baseline'] = {
            'value': div(value('ours-embedded', 'receive_per_s'), value('baseline', 'receive_per_s'))
        }
        out['receive_original_over_baseline'] = {
            'value': div(value('original', 'receive_per_s'), value('baseline', 'receive_per_s'))
        }
        out['scale_out_ours_two_over_one'] = {'value': value('ours', 'scale_out')}
        return out


def outside_load(record: dict) -> float | None:
    """CPUs busy on average outside this run (PostgreSQL and Redis not counted) while a
    measure ran: its ``usage`` blocks, wherever they are in the record, added up."""
    other = wall = 0.0

    def walk(node) -> None:
        nonlocal other, wall
        if isinstance(node, dict):
            usage = node.get('usage')
            if isinstance(usage, dict) and 'other_cpu_s' in usage:
                other += max(0.0, usage['other_cpu_s'])
                wall += usage['wall_s']
            for key, value in node.items():
                if key != 'usage':
                    walk(value)

    walk(record)
    return round(other / wall, 2) if wall else None


def machine_busy_cpu() -> float:
    """CPU seconds all CPUs of the machine spent busy since boot (/proc/stat)."""
    try:
        with open('/proc/stat') as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf('SC_CLK_TCK')


def shared_servers_cpu() -> dict[str, float]:
    """CPU seconds used so far by every PostgreSQL and Redis process on the machine.

    A PostgreSQL backend that has exited counts in the postmaster's children's time, so
    connections opened and closed meanwhile are included.
    """
    tick, used = os.sysconf('SC_CLK_TCK'), {'postgres': 0.0, 'redis': 0.0}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, fields = text[text.index('(') + 1 : text.rindex(')')], text.rsplit(')', 1)[1].split()
        name = 'postgres' if comm == 'postgres' else 'redis' if comm.startswith('redis-server') else None
        if name:
            used[name] += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return used


def sqlite_count(path: Path | None, table: str) -> int | None:
    if path is None or not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f'file:{path}?mode=ro', uri=True, timeout=10)) as conn:
            return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    except sqlite3.Error as exc:
        log(f'could not count {table} in {path}: {exc}')
        return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--only',
        default='original,ours,baseline',
        help='comma list of original, ours (PostgreSQL + Redis and the embedded default), ours-pg, '
        'ours-embedded, baseline (default: all)',
    )
    parser.add_argument(
        '--measures',
        default=','.join(m for m in MEASURES if m != 'memory'),
        help=f'comma list of {", ".join(MEASURES)} (or their JSON names); default: all but memory',
    )
    parser.add_argument('--memory', action='store_true', help='add the memory measure (10 minutes per implementation)')
    parser.add_argument('--quick', action='store_true', help='small counts: a smoke run of a few minutes')
    parser.add_argument('--json-out', default='', metavar='FILE', help='also write the JSON lines to FILE')
    parser.add_argument(
        '--worker-args', default='', help="extra arguments for our workers, e.g. '--pool threads --concurrency 16'"
    )
    parser.add_argument('--orig-worker-args', default='', help="extra arguments for the original's workers")
    parser.add_argument(
        '--isolation-original',
        action='store_true',
        help='run isolation for the original too (it has no timeouts: its hanging phase runs into the time limit)',
    )
    parser.add_argument('--e2e-timeout', type=float, default=0, help='seconds an e2e burst may take (default 600)')
    parser.add_argument('--memory-seconds', type=float, default=0, help='length of the memory run (default 600)')
    parser.add_argument(
        '--quiet-wait',
        type=float,
        default=None,
        help='before each start, wait up to this long for the machine to be quiet (default 120, --quick 20)',
    )
    parser.add_argument(
        '--quiet-cores', type=float, default=0.3, help='quiet: fewer CPUs than this busy outside this run (0.3)'
    )
    parser.add_argument(
        '--noisy-cpus',
        type=float,
        default=0.25,
        help='a measure during which more CPUs than this were busy outside this run (on average; PostgreSQL '
        'and Redis not counted) is measured again (0.25)',
    )
    parser.add_argument(
        '--noisy-retries', type=int, default=1, help='how many times to measure a noisy measure again (1; not memory)'
    )
    parser.add_argument(
        '--pg-url', default='postgres://postgres@127.0.0.1:5432', help='PostgreSQL server (no database)'
    )
    parser.add_argument('--redis-url', default='redis://127.0.0.1:6379/7', help='broker: a Redis db of its own')
    args = parser.parse_args()
    chosen: list[str] = []
    for name in (part.strip() for part in args.only.split(',') if part.strip()):
        expand = {'ours': ['ours', 'ours-embedded'], 'ours-pg': ['ours']}.get(name, [name])
        for impl in expand:
            if impl not in IMPLEMENTATIONS:
                parser.error(f'--only: unknown implementation {name!r}')
            if impl not in chosen:
                chosen.append(impl)
    args.only = [impl for impl in IMPLEMENTATIONS if impl in chosen]
    by_json = {json_name: short for short, json_name in MEASURES.items()}
    measures = []
    for name in (part.strip() for part in args.measures.split(',') if part.strip()):
        short = name if name in MEASURES else by_json.get(name)
        if short is None:
            parser.error(f'--measures: unknown measure {name!r}')
        measures.append(short)
    if args.memory:
        measures.append('memory')
    args.measures = [m for m in MEASURES if m in measures]
    if args.quiet_wait is None:
        args.quiet_wait = 20.0 if args.quick else 120.0
    if not args.redis_url.startswith('redis://'):
        parser.error('--redis-url must be a redis:// URL')
    return args


def main() -> int:
    args = parse_args()
    for number in (signal.SIGINT, signal.SIGTERM):  # both clean up, even if started in background
        signal.signal(number, signal.default_int_handler)
    run = Run(args)
    status = 0
    try:
        run.prepare()
        for measure in args.measures:
            if measure == 'peers':
                log('measure peers: the ceilings of the policy and target peers')
                try:
                    run.measure_peers()
                except Exception as exc:  # noqa: BLE001 - reported, and the run goes on
                    run.emit({'implementation': 'peers', 'measure': MEASURES[measure], 'error': str(exc)})
                continue
            for impl in APPLIES[measure]:
                if impl not in args.only:
                    continue
                if measure == 'isolation' and impl == 'original' and not args.isolation_original:
                    continue
                log(f'measure {measure}: {impl}')
                for attempt in range(1, 2 + args.noisy_retries):
                    run.attempt = attempt
                    try:
                        getattr(run, f'measure_{measure}')(impl)
                    except Exception as exc:  # noqa: BLE001 - a failed measure is reported, the run goes on
                        log(f'measure {measure} of {impl} failed: {exc}')
                        status = 1
                        run.record(impl, MEASURES[measure], None, '', False, {}, error=f'{type(exc).__name__}: {exc}')
                        break
                    noise = run.values[(impl, MEASURES[measure])].get('outside_load_cpus')
                    if noise is None or noise <= args.noisy_cpus or measure == 'memory' or attempt > args.noisy_retries:
                        break
                    log(f'  {noise:.2f} CPUs were busy outside this run meanwhile; measuring {impl} {measure} again')
                run.attempt = 1
        ratios = run.ratios()
        run.emit(
            {
                'implementation': 'all',
                'measure': 'ratios',
                'ratios': ratios,
                'git_status_short_pacifica_at_end': git('status', '--short', 'pacifica').splitlines(),
                'ours_code_digest_at_end': code_digest(),
                # More than one: the tree changed during the run, so ours' figures mix versions.
                'ours_code_digests_measured': sorted(
                    {r['conditions']['code_digest'] for r in run.records if 'code_digest' in r.get('conditions', {})}
                ),
                'load_average_1_5_15_at_end': [round(x, 2) for x in os.getloadavg()],
            }
        )
        log('ratios (goal):')
        for name, got in ratios.items():
            mark = {True: 'met', False: 'NOT met', None: ''}[got.get('met')]
            log(f'  {name:40} {got["value"]!s:>10}  {got.get("goal", ""):8} {mark}')
    except KeyboardInterrupt:
        log('interrupted; stopping everything started')
        status = 130
    finally:
        run.close()
        log(f'logs: {run.folder}')
    return status


if __name__ == '__main__':
    sys.exit(main())
