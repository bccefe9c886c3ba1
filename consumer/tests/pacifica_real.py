"""The real Pacifica services from PyPI, run as local processes for ``test_real_pacifica.py``.

``services_python()`` gives the Python of a virtual environment holding the pinned services of
``requirements-pacifica.txt`` (never ours: their pins would clash with our package's).  It is built
once into ``<repo>/.pacifica-services/<key>/`` (``$PACIFICA_SERVICES_CACHE`` moves that folder),
where ``<key>`` hashes the requirements (their comments aside) and the interpreter, and reused by every later run: a
``.complete`` file marks a finished build, an ``fcntl`` lock keeps two runs from building at once,
and a build that died half-way is thrown away and redone.  When it cannot be built because no
package index answers, :class:`IndexUnreachable` says so (the tests skip on that alone); any other
failure raises :class:`ServicesFailed` with pip's log.

:class:`PacificaServices` starts what a test asks for, each service once per session, as
subprocesses on 127.0.0.1, each in its own process group with its config files and log in a
temporary folder, and stops them all in :meth:`PacificaServices.close` (if the test run dies
instead, the kernel sends each one SIGTERM: ``PR_SET_PDEATHSIG``):

- ``archive()``: pacifica-archiveinterface (posix backend, a folder of the session);
- ``cart()``: pacifica-cartd's server and its Celery worker (SQLite, broker ``sqla+sqlite://``),
  in front of that archive interface;
- ``ingest()``: pacifica-uniqueid (SQLite), pacifica-metadata (PostgreSQL), pacifica-policy, and
  pacifica-ingest's server and Celery worker (PostgreSQL: its SQLite schema migration issues
  ``DROP COLUMN ... CASCADE``, which SQLite refuses), filing into the same archive interface; the
  metadata service's CloudEvents go to :class:`EventSink` (or to ``notify_url``: a real
  pacifica-notifications); :data:`SEED` is created in the metadata service through its REST API,
  which is what the policy service checks an ingest against.

PostgreSQL is reached at ``$PACIFICA_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``); each session creates two databases of its own
and drops them at the end (a run that is killed leaves its ``pacifica_*_test_<token>`` databases
behind).  Readiness is polled with deadlines: ``GET /`` for a server, the
"ready." line of a worker's log.  :meth:`PacificaServices.logs` gives the tail of every log for
assertion messages.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit, urlunsplit

import requests

REQUIREMENTS = Path(__file__).with_name('requirements-pacifica.txt')
REPO = Path(__file__).resolve().parents[2]
CACHE_ENV = 'PACIFICA_SERVICES_CACHE'
POSTGRES_ENV = 'PACIFICA_TEST_POSTGRES_URL'
DEFAULT_POSTGRES = 'postgresql://postgres@127.0.0.1:5432/postgres'
COMPLETE = '.complete'
#: Seconds a service gets to answer after it was started (two cores, maybe another test run beside).
START_TIMEOUT = 120.0
#: Seconds one pip build may take before it is given up.
BUILD_TIMEOUT = 1200.0

#: What the metadata service holds before any ingest: the policy service accepts an ingest when the
#: submitter, project and instrument exist, the submitter is ``member_of`` the project, and the
#: project is related to the instrument (``pacifica.policy.admin``: ``_projects_for_user_inst``
#: and ``_instruments_for_user_proj``; a non-admin submitter, as the admin group 0 is empty).
#: Project ``5678b`` is tied to the instrument too, but the user is not its member: refused.
SEED: dict[str, list[dict[str, Any]]] = {
    'users': [
        {'_id': 10, 'first_name': 'Ada', 'last_name': 'Tester', 'network_id': 'ada', 'email_address': 'ada@example.org'}
    ],
    'projects': [
        {'_id': '1234a', 'title': 'Consumer test project', 'accepted_date': '2020-01-01'},
        {'_id': '5678b', 'title': 'Somebody else s project', 'accepted_date': '2020-01-01'},
    ],
    'instruments': [
        {'_id': 54, 'name': 'Test instrument', 'display_name': 'Test instrument', 'name_short': 'ti', 'active': True}
    ],
    'project_user': [{'user': 10, 'project': '1234a', 'relationship_name': 'member_of'}],
    'project_instrument': [
        {'project': '1234a', 'instrument': 54, 'relationship_name': 'upload_required'},
        {'project': '5678b', 'instrument': 54, 'relationship_name': 'upload_required'},
    ],
}

#: CherryPy's settings for every service: the method dispatcher they all need, JSON by default, any
#: body size, no autoreloader (it would poll every source file of the environment).
CHERRYPY_CONFIG = """\
[global]
log.screen: True
engine.autoreload.on: False
checker.on: False
server.max_request_body_size: 0
server.socket_timeout: 60

[/]
request.dispatch: cherrypy.dispatch.MethodDispatcher()
tools.response_headers.on: True
tools.response_headers.headers: [('Content-Type', 'application/json')]
"""


class IndexUnreachable(Exception):
    """The services' environment is not built and cannot be: no package index answers."""


class ServicesFailed(Exception):
    """Building the environment, or starting or running a service, failed; the message has the logs."""


# --- the services' virtual environment --------------------------------------------------------------


def requirement_lines() -> list[str]:
    """The requirements file's requirements, without comments and blank lines."""
    lines = (line.split('#', 1)[0].strip() for line in REQUIREMENTS.read_text(encoding='utf-8').splitlines())
    return sorted(line for line in lines if line)


def environment_key() -> str:
    """Hash of the requirements (not of comments: editing those rebuilds nothing) and the interpreter."""
    digest = hashlib.sha256('\n'.join(requirement_lines()).encode())
    digest.update(f'{sys.implementation.cache_tag} {platform.machine()} {platform.system()}'.encode())
    return digest.hexdigest()[:16]


def configured_postgres() -> str:
    """Where the ingest services' databases are made: ``$PACIFICA_TEST_POSTGRES_URL``, or the local default."""
    return os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES


def postgres_missing() -> str:
    """Why the ingest services cannot run, when no PostgreSQL was named and none listens at the default; else ''.

    A PostgreSQL that was named (CI names one) is never a reason to skip: its failures fail the tests.
    """
    if os.environ.get(POSTGRES_ENV):
        return ''
    parts = urlsplit(DEFAULT_POSTGRES)
    try:
        socket.create_connection((parts.hostname or '127.0.0.1', parts.port or 5432), timeout=3).close()
    except OSError as exc:
        return f'no PostgreSQL at {parts.hostname}:{parts.port} ({exc}); set {POSTGRES_ENV} to name one'
    return ''


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO / '.pacifica-services')


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding='utf-8', errors='replace')
    except OSError as exc:
        return f'({path}: {exc})'
    return '\n'.join(text.splitlines()[-lines:])


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, 'a') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: Imported once after a build: every service's entry point, so a missing dependency shows now.
_ENTRY_MODULES = (
    'pacifica.archiveinterface.__main__',
    'pacifica.cartd.__main__',
    'pacifica.ingest.__main__',
    'pacifica.metadata.__main__',
    'pacifica.metadata.admin_cmd',
    'pacifica.policy.__main__',
    'pacifica.uniqueid.__main__',
    'celery.__main__',
    'kombu.transport.sqlalchemy',
    'psycopg2',
)


def _usable(venv: Path) -> bool:
    python = venv / 'bin' / 'python'
    if not (venv / COMPLETE).is_file() or not python.exists():
        return False
    check = subprocess.run(
        [str(python), '-c', 'import pacifica.cartd, pacifica.ingest, pacifica.metadata, celery'],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return check.returncode == 0


def services_python() -> Path:
    """The Python of the services' environment, built now if no complete one is cached."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = environment_key()
    venv = root / key
    if not _usable(venv):
        with _locked(root / f'{key}.lock'):
            if not _usable(venv):  # another run may have built it while this one waited
                _build(venv, root / f'{key}.build.log')
    return venv / 'bin' / 'python'


def _build(venv: Path, log: Path) -> None:
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    python = venv / 'bin' / 'python'
    with open(log, 'w', encoding='utf-8') as out:
        steps = [
            [sys.executable, '-m', 'venv', str(venv)],
            # --no-deps: the file is a complete lock (and it swaps psycopg2 for psycopg2-binary).
            [
                str(python),
                '-m',
                'pip',
                'install',
                '--no-deps',
                '--no-input',
                '--disable-pip-version-check',
                '--retries',
                '2',
                '--timeout',
                '30',
                '-r',
                str(REQUIREMENTS),
            ],
            [str(python), '-c', ';'.join(f'import {module}' for module in _ENTRY_MODULES)],
        ]
        for step in steps:
            out.write(f'$ {" ".join(step)}\n')
            out.flush()
            try:
                done = subprocess.run(
                    step, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, check=False, env=_clean_env()
                )
                failed = done.returncode != 0
            except subprocess.TimeoutExpired:
                out.write(f'\n(gave up after {BUILD_TIMEOUT:g} s)\n')
                failed = True
            if failed:
                out.flush()
                unreachable = _index_unreachable(python)
                message = f'building {venv} failed at `{" ".join(step[:4])} ...`; {log}:\n{_tail(log)}'
                shutil.rmtree(venv, ignore_errors=True)
                if unreachable:
                    raise IndexUnreachable(f'{unreachable}\n{message}')
                raise ServicesFailed(message)
    record = {
        'requirements': requirement_lines(),
        'python': sys.version,
        'seconds': round(time.monotonic() - started, 1),
        'built': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
    }
    (venv / COMPLETE).write_text(json.dumps(record) + '\n', encoding='utf-8')


def _index_url(python: Path) -> str:
    """The index pip installs from: ``$PIP_INDEX_URL``, pip's configuration, or PyPI."""
    if os.environ.get('PIP_INDEX_URL'):
        return os.environ['PIP_INDEX_URL'].split()[0]
    for interpreter in (python, Path(sys.executable)):
        try:
            listed = subprocess.run(
                [str(interpreter), '-m', 'pip', 'config', 'list'],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in listed.splitlines():
            name, _, value = line.partition('=')
            if name.strip() in ('global.index-url', 'install.index-url'):
                return value.strip().strip('\'"').split()[0]
        break
    return 'https://pypi.org/simple'


def _index_unreachable(python: Path) -> str:
    """Why no package index can be reached, or '' if the index answers (so the build failed for real)."""
    url = _index_url(python).rstrip('/') + '/pacifica-cartd/'
    if urlsplit(url).scheme not in ('http', 'https'):
        return '' if Path(urlsplit(url).path).exists() else f'the package index {url} does not exist'
    try:
        requests.get(url, timeout=15)
    except requests.RequestException as exc:
        return f'no package index reachable: GET {url}: {exc}'
    return ''


def _clean_env(**settings: str) -> dict[str, str]:
    """Our environment without what would reach into the services' Python or settings, plus ``settings``."""
    leaks = ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'PYTHONUSERBASE', 'VIRTUAL_ENV', '__PYVENV_LAUNCHER__')
    env = {k: v for k, v in os.environ.items() if k not in leaks and not k.startswith(('CELERY_', 'PEEWEE_'))}
    for name in ('BROKER_URL', 'BACKEND_URL', 'VOLUME_PATH', 'TRANSFER_SIZE', 'METADATA_URL', 'STATUS_URL'):
        env.pop(name, None)
    env.update(settings)
    return env


# --- processes ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM when the test run dies, even if it cannot stop us (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A free port below the ephemeral range, where port-0 servers and outgoing connections never land."""
    try:
        low = int(Path('/proc/sys/net/ipv4/ip_local_port_range').read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randint(20000, max(20001, low - 1))
        with socket.socket() as probe:
            try:
                probe.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise ServicesFailed('no free port found between 20000 and the ephemeral range')


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ''  # an HTTP service: ready when GET url/ answers 200
    ready_line: str = ''  # otherwise: ready when this appears in its log

    def tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)


class PacificaServices:
    """The services of one test session; each part starts on first use and stops at :meth:`close`."""

    def __init__(self, python: Path, folder: Path, postgres_url: Optional[str] = None, notify_url: str = ''):
        self.python = python
        self.bin = python.parent
        self.folder = folder
        self.postgres_url = postgres_url or configured_postgres()
        self.token = uuid.uuid4().hex[:10]
        self.services: list[Service] = []
        self.databases: list[str] = []
        self.home = folder / 'home'  # no ~/.pacifica-*/config.ini of the machine's can reach them
        self.home.mkdir(parents=True, exist_ok=True)
        self.cpconfig = folder / 'cpconfig.ini'
        self.cpconfig.write_text(CHERRYPY_CONFIG, encoding='utf-8')
        self.sink: Optional[EventSink] = None
        self.notify_url = notify_url  # where the metadata service posts its events; '' for :class:`EventSink`
        self._parts: dict[str, Any] = {}
        self._lock = threading.RLock()  # cart() and ingest() start archive() inside

    # --- bookkeeping ---

    def logs(self, lines: int = 25) -> str:
        """The tail of every service's log, for an assertion message."""
        return '\n'.join(f'--- {s.name} ({s.log}) ---\n{s.tail(lines)}' for s in self.services)

    def _fail(self, message: str) -> ServicesFailed:
        return ServicesFailed(f'{message}\n{self.logs()}')

    def _config(self, name: str, sections: Mapping[str, Mapping[str, Any]]) -> Path:
        path = self.folder / f'{name}.ini'
        lines = []
        for section, values in sections.items():
            lines.append(f'[{section}]')
            lines += [f'{key} = {value}' for key, value in values.items()]
            lines.append('')
        path.write_text('\n'.join(lines), encoding='utf-8')
        return path

    def _script(self, name: str) -> list[str]:
        """A console script run by the environment's Python: works even if the cache folder was moved."""
        return [str(self.python), str(self.bin / name)]

    def _run(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        """A one-shot command (a database sync), its output in its own log."""
        log = self.folder / f'{name}.log'
        with open(log, 'wb') as out:
            try:
                done = subprocess.run(
                    argv, env=env, cwd=self.folder, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False
                )
            except subprocess.TimeoutExpired:
                raise ServicesFailed(f'{name}: no exit after 120 s\n{_tail(log)}')
        if done.returncode != 0:
            raise ServicesFailed(f'{name} exited {done.returncode}:\n{_tail(log)}')

    def _start(self, name: str, argv: list[str], env: dict[str, str], url: str = '', ready_line: str = '') -> Service:
        log = self.folder / f'{name}.log'
        out = open(log, 'ab')  # the child keeps its own copy; ours is closed below
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: close() stops it and whatever it forked
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl
            )
        finally:
            out.close()
        service = Service(name, process, log, url, ready_line)
        self.services.append(service)
        return service

    def _wait(self, services: list[Service], timeout: float = START_TIMEOUT) -> None:
        """Poll until each service answers (or logs its ready line); fail at once if one exits."""
        deadline = time.monotonic() + timeout
        pending = list(services)
        pause = 0.05
        with requests.Session() as http:
            while pending:
                for service in list(pending):
                    if service.process.poll() is not None:
                        raise self._fail(f'{service.name} exited with {service.process.returncode} while starting')
                    if service.url:
                        try:
                            ready = http.get(service.url + '/', timeout=2).status_code == 200
                        except requests.RequestException:
                            ready = False
                    else:
                        ready = service.ready_line in service.tail(400)
                    if ready:
                        pending.remove(service)
                if pending and time.monotonic() + pause > deadline:
                    names = ', '.join(s.name for s in pending)
                    raise self._fail(f'{names}: not ready after {timeout:g} s')
                if pending:
                    time.sleep(pause)  # polling interval, not synchronisation: the deadline bounds it
                    pause = min(pause * 1.5, 0.5)

    def close(self) -> None:
        """Stop every service (its whole process group), then drop the session's databases."""
        for service in self.services:
            _signal_group(service.process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for service in self.services:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # Still running, so not reaped: its group id cannot have been reused by anyone else.
                _signal_group(service.process, signal.SIGKILL)
                try:
                    service.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if self.sink is not None:
            self.sink.close()
        for database in self.databases:
            try:
                self._postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            except ServicesFailed:
                pass

    def _postgres(self, sql: str) -> None:
        """Run one statement as PostgreSQL's admin, with psycopg2 from the services' environment."""
        script = (
            'import sys, psycopg2\n'
            'db = psycopg2.connect(sys.argv[1], connect_timeout=10)\n'
            'db.autocommit = True\n'
            'db.cursor().execute(sys.argv[2])\n'
        )
        done = subprocess.run(
            [str(self.python), '-c', script, self.postgres_url, sql],
            capture_output=True,
            text=True,
            timeout=60,
            env=_clean_env(HOME=str(self.home)),
            check=False,
        )
        if done.returncode != 0:
            raise ServicesFailed(f'PostgreSQL at {self.postgres_url}: {sql}: {done.stderr.strip()[-2000:]}')

    def _database(self, purpose: str) -> str:
        """A new PostgreSQL database for this session; its URL."""
        name = f'pacifica_{purpose}_test_{self.token}'
        self._postgres(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        parts = urlsplit(self.postgres_url)
        return urlunsplit((parts.scheme, parts.netloc, '/' + name, '', ''))

    def _once(self, part: str, start: Callable[[], Any]) -> Any:
        with self._lock:
            if part not in self._parts:
                self._parts[part] = start()
            return self._parts[part]

    # --- the parts ---

    def archive(self) -> str:
        """pacifica-archiveinterface (posix backend); its URL (files are ``PUT``/``GET`` at ``{url}/{id}``)."""
        return self._once('archive', self._start_archive)

    def _start_archive(self) -> str:
        port = free_port()
        config = self._config('archiveinterface', {'posix': {'use_id2filename': 'false'}})
        store = self.folder / 'archive'
        store.mkdir()
        env = _clean_env(
            HOME=str(self.home), ARCHIVEINTERFACE_CONFIG=str(config), ARCHIVEINTERFACE_CPCONFIG=str(self.cpconfig)
        )
        argv = [*self._script('pacifica-archiveinterface'), '--cherrypy-config', str(self.cpconfig)]
        argv += ['-c', str(config), '-p', str(port), '-a', '127.0.0.1', '-t', 'posix', '--prefix', str(store)]
        service = self._start('archiveinterface', argv, env, url=f'http://127.0.0.1:{port}')
        self._wait([service])
        return service.url

    def cart(self) -> str:
        """pacifica-cartd and its worker, in front of :meth:`archive`; the cart service's URL."""
        return self._once('cart', self._start_cart)

    @property
    def cart_volume(self) -> Path:
        return self.folder / 'cart-volume'

    def _start_cart(self) -> str:
        archive = self.archive()
        port = free_port()
        self.cart_volume.mkdir()
        config = self._config(
            'cartd',
            {
                'cartd': {'volume_path': f'{self.cart_volume}/'},
                'database': {
                    'peewee_url': f'sqlite:///{self.folder / "cart.sqlite3"}',
                    'connect_attempts': 3,
                    'connect_wait': 1,
                },
                'archiveinterface': {'url': f'{archive}/'},  # cartd appends the file id to it
                'celery': {
                    'broker_url': f'sqla+sqlite:///{self.folder / "cart-broker.sqlite3"}',
                    'backend_url': 'disabled',
                },
            },
        )
        env = _clean_env(HOME=str(self.home), CARTD_CONFIG=str(config), CARTD_CPCONFIG=str(self.cpconfig))
        self._run('cartd-dbsync', [*self._script('pacifica-cartd-cmd'), '-c', str(config), 'dbsync'], env)
        argv = [*self._script('pacifica-cartd'), '-c', str(config), '--cpconfig', str(self.cpconfig)]
        server = self._start('cartd', [*argv, '-p', str(port), '-a', '127.0.0.1'], env, url=f'http://127.0.0.1:{port}')
        worker = self._start('cartd-worker', self._worker('pacifica.cartd.tasks', 'cart'), env, ready_line=' ready.')
        self._wait([server, worker])
        return server.url

    def _worker(self, app: str, name: str) -> list[str]:
        argv = [str(self.python), '-m', 'celery', '-A', app, 'worker', '--pool', 'solo', '--concurrency', '1']
        return [*argv, '--hostname', f'{name}-{self.token}@%h', '--loglevel', 'INFO']

    def ingest(self) -> IngestStack:
        """uniqueid, metadata (seeded with :data:`SEED`), policy, ingest and its worker, filing into :meth:`archive`."""
        return self._once('ingest', self._start_ingest)

    def _start_ingest(self) -> IngestStack:
        archive = self.archive()
        self.sink = EventSink()
        ports = {name: free_port() for name in ('uniqueid', 'metadata', 'policy', 'ingest')}
        urls = {name: f'http://127.0.0.1:{port}' for name, port in ports.items()}
        metadata_db, ingest_db = self._database('metadata'), self._database('ingest')
        database = {'connect_attempts': 3, 'connect_wait': 1}

        uniqueid = self._config(
            'uniqueid', {'database': {'peewee_url': f'sqlite:///{self.folder / "uniqueid.sqlite3"}', **database}}
        )
        uniqueid_env = _clean_env(HOME=str(self.home), UNIQUEID_CONFIG=str(uniqueid))
        metadata = self._config(
            'metadata',
            {
                'database': {'peewee_url': metadata_db, **database},
                'notifications': {'disabled': 'False', 'url': self.notify_url or self.sink.url},
            },
        )
        metadata_env = _clean_env(HOME=str(self.home), METADATA_CONFIG=str(metadata))
        policy = self._config(
            'policy',
            {
                'policy': {'admin_group_id': 0, 'admin_user_id': 0},
                'metadata': {'endpoint_url': urls['metadata'], 'status_url': f'{urls["metadata"]}/groups'},
            },
        )
        policy_env = _clean_env(HOME=str(self.home), POLICY_CONFIG=str(policy))
        ingest_volume = self.folder / 'ingest-volume'
        ingest_volume.mkdir()
        ingest = self._config(
            'ingest',
            {
                'ingest': {'volume_path': ingest_volume},
                'uniqueid': {'url': urls['uniqueid']},
                'policy': {'ingest_url': f'{urls["policy"]}/ingest'},
                'archiveinterface': {'url': archive},  # ingest appends "/<file id>"
                'metadata': {'ingest_url': f'{urls["metadata"]}/ingest'},
                'database': {'peewee_url': ingest_db, **database},
                'celery': {
                    'broker_url': f'sqla+sqlite:///{self.folder / "ingest-broker.sqlite3"}',
                    'backend_url': 'disabled',
                },
            },
        )
        ingest_env = _clean_env(HOME=str(self.home), INGEST_CONFIG=str(ingest))

        self._run(
            'uniqueid-dbsync', [*self._script('pacifica-uniqueid-cmd'), '-c', str(uniqueid), 'dbsync'], uniqueid_env
        )
        self._run('metadata-dbsync', [*self._script('pacifica-metadata-cmd'), 'dbsync'], metadata_env)
        self._run('ingest-dbsync', [*self._script('pacifica-ingest-cmd'), '-c', str(ingest), 'dbsync'], ingest_env)

        def http(name: str, script: str, *args: str, env: dict[str, str]) -> Service:
            argv = [*self._script(script), *args, '-p', str(ports[name]), '-a', '127.0.0.1']
            return self._start(name, argv, env, url=urls[name])

        cp = str(self.cpconfig)
        started = [
            http('uniqueid', 'pacifica-uniqueid', '-c', str(uniqueid), '--cpconfig', cp, env=uniqueid_env),
            http('metadata', 'pacifica-metadata', '-c', str(metadata), '--cpconfig', cp, env=metadata_env),
            http('policy', 'pacifica-policy', '-c', cp, env=policy_env),
            http('ingest', 'pacifica-ingest', '-c', str(ingest), '--cp-config', cp, env=ingest_env),
            self._start(
                'ingest-worker', self._worker('pacifica.ingest.tasks', 'ingest'), ingest_env, ready_line=' ready.'
            ),
        ]
        self._wait(started)
        self._seed(urls['metadata'])
        return IngestStack(
            ingest=urls['ingest'],
            metadata=urls['metadata'],
            policy=urls['policy'],
            uniqueid=urls['uniqueid'],
            archive=archive,
            events=self.sink,
        )

    def _seed(self, metadata: str) -> None:
        with requests.Session() as http:
            for table, records in SEED.items():
                for record in records:
                    answer = http.put(f'{metadata}/{table}', json=record, timeout=30)
                    if answer.status_code != 200:
                        why = f'{answer.status_code} {answer.text[:2000]}'
                        raise self._fail(f'seeding the metadata service: PUT /{table} {record}: {why}')


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the service's process group, unless its leader has exited (its id may be anyone's by now)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signum)  # its own session: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class IngestStack:
    ingest: str
    metadata: str
    policy: str
    uniqueid: str
    archive: str
    events: EventSink


# --- where the metadata service sends its CloudEvents ----------------------------------------------


class EventSink:
    """An HTTP endpoint on 127.0.0.1 that answers 200 to every POST and keeps the JSON it was sent.

    It stands where pacifica-notifications' ``/receive`` would: the metadata service posts an
    ``org.pacifica.metadata.ingest`` event (the transaction's metadata) for every ingest.
    """

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                try:
                    event = json.loads(body)
                except ValueError:
                    event = {'unparsed': body.decode('utf-8', 'replace')}
                with sink._changed:
                    sink.events.append(event)
                    sink._changed.notify_all()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'{}')

        self._server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self._server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self._server.server_port}/receive'
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.1}, daemon=True)
        self._thread.start()

    def wait_for(self, matches: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """The first event ``matches`` accepts, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if matches(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServicesFailed(f'no such event after {timeout:g} s; received {len(self.events)} events')
                self._changed.wait(left)

    def ingest_event(self, transaction_id: int, timeout: float = 30.0) -> dict[str, Any]:
        """The metadata service's ``org.pacifica.metadata.ingest`` event for ``transaction_id``."""

        def matches(event: Any) -> bool:
            return (
                isinstance(event, dict)
                and event.get('eventType') == 'org.pacifica.metadata.ingest'
                and any(
                    r.get('destinationTable') == 'Transactions._id' and r.get('value') == transaction_id
                    for r in event.get('data') or []
                    if isinstance(r, dict)
                )
            )

        return self.wait_for(matches, timeout)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
