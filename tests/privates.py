"""Private PostgreSQL, Redis and RabbitMQ servers that fault-injection tests may break.

The machine's shared services (PostgreSQL on 5432, Redis on 6379, RabbitMQ on
5672) serve every test and every engineer, so a test that stops or kills one
breaks everybody else.  The classes here start a server of the same kind on
127.0.0.1 with its own free port and its own data, as a child process in its
own process group, so a test can stop, kill and restart it at will::

    with PrivateRedis(tmp_path) as redis:
        ...  # use redis.url
        redis.restart()

``close()`` (or leaving the ``with`` block) stops the server and removes its
data; servers still open when the interpreter exits are closed then, so a
failing test leaves no server behind.  Each server's output goes to
``<folder>/<name>.log``, whose tail is quoted whenever a start fails.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import kombu
import kombu.exceptions
import psycopg2
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .procs import free_port, wait_until

#: Servers started and not yet closed, closed at exit so that none outlives the session.
_OPEN: set[PrivateServer] = set()


def _port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port (cheap pre-check)."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=0.5):
            return True
    except OSError:
        return False


def _group_has_live_process(pgid: int) -> bool:
    """Whether a live process (the server's orphaned children included) is left in a group.

    Zombies do not count: they hold nothing, and whoever adopted them reaps them.
    """
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(')', 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == pgid and state not in ('Z', 'X'):
            return True
    return False


class PrivateServer:
    """One server process on 127.0.0.1:port with its data under ``folder``.

    Subclasses say how to prepare the data once, which command runs the server,
    how to tell that it serves, and which signal stops it gracefully.
    """

    #: Short name used for the log file and in messages.
    name = 'server'
    #: Seconds a start may take before it counts as failed.
    start_timeout = 60.0
    #: Seconds a graceful stop may take before the process group is killed.
    stop_timeout = 30.0
    #: The signal that asks the main process for a clean shutdown.
    stop_signal = signal.SIGTERM

    def __init__(self, folder: Path):
        missing = self.missing()
        if missing:
            pytest.skip(f'{self.name} server binaries are not installed here: {missing}')
        self.folder = Path(folder) / f'{self.name}-{uuid.uuid4().hex[:8]}'
        self.folder.mkdir(parents=True)
        self.port = free_port()
        self.log = self.folder / f'{self.name}.log'
        self.proc: subprocess.Popen | None = None
        self._group_alive = False
        self._prepared = False
        self.times: dict[str, float] = {}

    # -- what subclasses provide ------------------------------------------------

    @classmethod
    def missing(cls) -> str | None:
        """What this machine lacks to run the server (None: nothing)."""
        return None

    def _prepare(self) -> None:
        """Create the server's data on first start (nothing by default)."""

    def _command(self) -> list[str]:
        """The server's command line, run in the foreground as our child."""
        raise NotImplementedError

    def _popen_options(self) -> dict:
        """Extra ``subprocess.Popen`` arguments: environment, user, working folder."""
        return {}

    def _serving(self) -> bool:
        """Whether the server answers a real client request."""
        raise NotImplementedError

    def _remove_data(self) -> None:
        """Remove the server's data (the log stays, for post-mortems)."""

    @property
    def url(self) -> str:
        """The URL clients of this server are configured with."""
        raise NotImplementedError

    # -- life cycle ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server's main process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, for failure messages."""
        try:
            text = self.log.read_text(errors='replace')
        except FileNotFoundError:
            return f'--- {self.log} does not exist ---'
        return f'--- tail of {self.log} ---\n{text[-chars:]}'

    def start(self, timeout: float | None = None) -> PrivateServer:
        """Start the server and wait until it serves; fail with its log if it does not."""
        if self.running:
            return self
        began = time.monotonic()
        _OPEN.add(self)
        if not self._prepared:
            self._prepare()
            self._prepared = True
        with open(self.log, 'ab') as out:
            out.write(f'=== {self.name}: starting on 127.0.0.1:{self.port} ===\n'.encode())
            out.flush()
            self.proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_options(),
            )
            self._group_alive = True
        timeout = self.start_timeout if timeout is None else timeout
        try:
            wait_until(
                lambda: not self.running or self._serving(),
                timeout,
                interval=0.05,
                what=f'{self.name} to serve on 127.0.0.1:{self.port}',
            )
        except AssertionError as exc:
            self.kill()
            raise AssertionError(f'{exc}\n{self.log_tail()}') from None
        if not self.running:
            status = self.proc.returncode
            self._reap_group()
            raise AssertionError(f'{self.name} exited with status {status} while starting\n{self.log_tail()}')
        self.times['start'] = time.monotonic() - began
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Shut the server down cleanly (its data is kept), killing it if it lingers."""
        if not self.running:
            self._reap_group()
            return
        began = time.monotonic()
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap_group()
        self.times['stop'] = time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL the server's whole process group, as a crash or power cut would."""
        self._reap_group()

    def restart(self, crash: bool = False, timeout: float | None = None) -> PrivateServer:
        """Stop (or, with ``crash``, kill) the server and start it again on the same port."""
        began = time.monotonic()
        if crash:
            self.kill()
        else:
            self.stop()
        self.start(timeout)
        self.times['crash-restart' if crash else 'restart'] = time.monotonic() - began
        return self

    def close(self) -> None:
        """Stop the server for good and remove its data; safe to call more than once."""
        try:
            self.stop()
        finally:
            _OPEN.discard(self)
            self._remove_data()

    def _reap_group(self) -> None:
        """SIGKILL whatever is left of the server's process group (helpers, workers)."""
        if self.proc is None or not self._group_alive:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=15)
        wait_until(lambda: not _group_has_live_process(self.proc.pid), 15, what=f'the processes of {self.name} to exit')
        self._group_alive = False

    def __enter__(self) -> PrivateServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = 'running' if self.running else 'stopped'
        return f'<{type(self).__name__} 127.0.0.1:{self.port} {state}>'


def _postgres_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``: PATH first, then the newest Debian one."""
    candidates = []
    for found in (shutil.which('initdb'), shutil.which('initdb', path='/usr/local/bin')):
        if found:
            candidates.append(Path(found).resolve().parent)
    versions = sorted(
        glob.glob('/usr/lib/postgresql/*/bin'),
        key=lambda p: [int(x) for x in Path(p).parent.name.split('.') if x.isdigit()],
        reverse=True,
    )
    candidates.extend(Path(p) for p in versions)
    for bindir in candidates:
        if (bindir / 'initdb').exists() and (bindir / 'postgres').exists():
            return bindir
    raise FileNotFoundError('PostgreSQL server binaries (initdb, postgres) not found')


def _run_as(user: str, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command as another OS user (we are root; PostgreSQL refuses to be)."""
    return subprocess.run(args, user=user, group=user, extra_groups=[], check=False, **kwargs)


class PrivatePostgres(PrivateServer):
    """A PostgreSQL cluster of its own: trust auth, TCP on 127.0.0.1 only, fsync off.

    ``initdb`` and the server run as the ``postgres`` OS user, because both refuse
    to run as root.  pytest's tmp folders sit under a 0700 root folder that user
    cannot enter, so the cluster then lives in a ``mkdtemp`` folder under /tmp,
    owned by ``postgres`` and removed by ``close()``; the log stays in ``folder``.
    ``stop()`` is ``pg_ctl -m fast``'s signal (SIGINT to the postmaster): open
    sessions are cut and the data is checkpointed.  ``fsync`` is off for speed,
    but every commit is still written to the kernel before it is acknowledged
    (``synchronous_commit`` stays on), so committed data survives ``kill()``
    as it would a crash of the server (not of the machine).
    """

    @classmethod
    def missing(cls) -> str | None:
        try:
            _postgres_bindir()
        except FileNotFoundError as exc:
            return str(exc)
        return None

    name = 'postgres'
    stop_signal = signal.SIGINT
    user = 'postgres'

    def __init__(self, folder: Path, database: str = 'postgres'):
        super().__init__(folder)
        self.database = database
        self.bindir = _postgres_bindir()
        self.root = self._data_root()
        self.data = self.root / 'data'

    def _data_root(self) -> Path:
        """A folder owned by the postgres user that it can reach (see the class docstring)."""
        root = self.folder / 'pg'
        root.mkdir(mode=0o700)
        shutil.chown(root, self.user, self.user)
        if _run_as(self.user, ['test', '-w', str(root), '-a', '-x', str(root)]).returncode == 0:
            return root
        root.rmdir()
        root = Path(tempfile.mkdtemp(prefix='private-pg-', dir='/tmp'))
        shutil.chown(root, self.user, self.user)
        return root

    def _prepare(self) -> None:
        with open(self.log, 'ab') as out:
            done = _run_as(
                self.user,
                [
                    str(self.bindir / 'initdb'),
                    '-D',
                    str(self.data),
                    '-U',
                    'postgres',
                    '--auth=trust',
                    '--no-sync',
                    '-E',
                    'UTF8',
                    '--locale=C',
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env={**os.environ, 'HOME': str(self.root)},
            )
        if done.returncode:
            raise AssertionError(f'initdb failed with status {done.returncode}\n{self.log_tail()}')

    def _command(self) -> list[str]:
        return [
            str(self.bindir / 'postgres'),
            '-D',
            str(self.data),
            '-p',
            str(self.port),
            '-c',
            'listen_addresses=127.0.0.1',
            '-c',
            f'unix_socket_directories={self.root}',
            '-c',
            'fsync=off',
            '-c',
            'full_page_writes=off',
            '-c',
            'max_connections=100',
            '-c',
            'logging_collector=off',
        ]

    def _popen_options(self) -> dict:
        return {
            'user': self.user,
            'group': self.user,
            'extra_groups': [],
            'cwd': self.root,
            'env': {**os.environ, 'HOME': str(self.root)},
        }

    def _connect(self, database: str):
        """A direct psycopg2 connection, for readiness checks and setup."""
        return psycopg2.connect(host='127.0.0.1', port=self.port, user='postgres', dbname=database, connect_timeout=2)

    def _serving(self) -> bool:
        try:
            conn = self._connect('postgres')
        except psycopg2.OperationalError:
            return False
        conn.close()
        return True

    def start(self, timeout: float | None = None) -> PrivatePostgres:
        super().start(timeout)
        if self.database != 'postgres':
            conn = self._connect('postgres')
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute('SELECT 1 FROM pg_database WHERE datname = %s', (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')
            conn.close()
        return self

    @property
    def url(self) -> str:
        """The peewee URL of the test database."""
        return f'postgres://postgres@127.0.0.1:{self.port}/{self.database}'

    def _remove_data(self) -> None:
        self._drop_crashed_shared_memory()
        shutil.rmtree(self.root, ignore_errors=True)

    def _drop_crashed_shared_memory(self) -> None:
        """Remove the SysV segment a killed postmaster leaves (a restart would reuse it).

        Only the segment that our ``postmaster.pid`` names and that our postmaster
        created, so the shared server's segment is never touched.
        """
        try:
            lines = (self.data / 'postmaster.pid').read_text().splitlines()
        except FileNotFoundError:
            return
        if self.running or len(lines) < 7 or len(lines[6].split()) != 2:
            return
        key, shmid = lines[6].split()
        for row in Path('/proc/sysvipc/shm').read_text().splitlines()[1:]:
            fields = row.split()
            if fields[:2] == [key, shmid] and fields[4] == lines[0].strip():
                subprocess.run(['ipcrm', '-m', shmid], check=False, capture_output=True)


class PrivateRedis(PrivateServer):
    """A redis-server of its own, by default with no persistence at all.

    Without ``persistent`` a restart empties it, as a restart of a Redis that
    snapshots nothing would; with it, an append-only file fsynced on every
    write keeps all acknowledged writes across a restart or a crash.
    """

    name = 'redis'
    start_timeout = 30.0

    @classmethod
    def missing(cls) -> str | None:
        return None if shutil.which('redis-server') or Path('/usr/bin/redis-server').exists() else 'redis-server'

    def __init__(self, folder: Path, persistent: bool = False):
        super().__init__(folder)
        self.persistent = persistent
        self.data = self.folder / 'data'
        self.data.mkdir()

    def _command(self) -> list[str]:
        return [
            shutil.which('redis-server') or '/usr/bin/redis-server',
            '--port',
            str(self.port),
            '--bind',
            '127.0.0.1',
            '--save',
            '',
            '--appendonly',
            'yes' if self.persistent else 'no',
            '--appendfsync',
            'always',
            '--dir',
            str(self.data),
            '--daemonize',
            'no',
            '--logfile',
            '',
        ]

    def _serving(self) -> bool:
        client = redis.Redis(
            host='127.0.0.1', port=self.port, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    @property
    def url(self) -> str:
        """The client URL of database 0."""
        return f'redis://127.0.0.1:{self.port}/0'

    def _remove_data(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)


#: Where the Debian package keeps the real scripts (``/usr/sbin``'s wrappers su to rabbitmq).
RABBITMQ_SCRIPTS = Path('/usr/lib/rabbitmq/bin')


class PrivateRabbitMQ(PrivateServer):
    """A RabbitMQ node of its own: own node name, AMQP and distribution ports, data and logs.

    The node runs as root from the package's own scripts with everything that
    ``/etc/rabbitmq`` would set (node name ``rabbit@localhost``, listener on 5672)
    overridden, and with ``HOME`` inside its folder, so that its Erlang cookie
    is its own too.  No plugins are enabled.  It registers with the machine's
    epmd on 127.0.0.1:4369 like any Erlang node (and starts one if none runs).
    ``stop()`` sends SIGTERM to the Erlang VM, which RabbitMQ takes as a clean
    shutdown (``rabbitmqctl -n NODE stop`` does the same, slower).
    """

    name = 'rabbitmq'
    start_timeout = 90.0

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.node = f'private-{uuid.uuid4().hex[:10]}@localhost'
        self.dist_port = free_port()
        self.home = self.folder / 'home'
        self.mnesia = self.folder / 'mnesia'
        self.logs = self.folder / 'log'
        for path in (self.home, self.mnesia, self.logs):
            path.mkdir()
        self.home.chmod(0o700)
        (self.folder / 'enabled_plugins').write_text('[].\n')
        (self.folder / 'rabbitmq-env.conf').write_text('')
        (self.folder / 'rabbitmq.conf').write_text(
            f'listeners.tcp.1 = 127.0.0.1:{self.port}\n'
            'disk_free_limit.absolute = 1MB\n'
            'log.console = true\nlog.file = false\n'
        )

    def env(self) -> dict[str, str]:
        """The environment of this node's server and of ``rabbitmqctl -n`` calls to it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(('RABBITMQ_', 'ERL_')) and k != 'NOTIFY_SOCKET'}
        env.update(
            {
                'HOME': str(self.home),
                'RABBITMQ_NODENAME': self.node,
                'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
                'RABBITMQ_NODE_PORT': str(self.port),
                'RABBITMQ_DIST_PORT': str(self.dist_port),
                'RABBITMQ_MNESIA_BASE': str(self.mnesia),
                'RABBITMQ_LOG_BASE': str(self.logs),
                'RABBITMQ_LOGS': '-',
                'RABBITMQ_ENABLED_PLUGINS_FILE': str(self.folder / 'enabled_plugins'),
                'RABBITMQ_CONFIG_FILE': str(self.folder / 'rabbitmq.conf'),
                'RABBITMQ_ADVANCED_CONFIG_FILE': str(self.folder / 'advanced.config'),
                'RABBITMQ_CONFIG_FILES': str(self.folder / 'conf.d'),
                'RABBITMQ_CONF_ENV_FILE': str(self.folder / 'rabbitmq-env.conf'),
                'RABBITMQ_PID_FILE': str(self.folder / 'rabbitmq.pid'),
                'ERL_EPMD_ADDRESS': '127.0.0.1',
                'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS': '-kernel inet_dist_use_interface {127,0,0,1}',
                # Exec the Erlang VM in place of the script, so that our child is the VM itself.
                'RUNNING_UNDER_SYSTEMD': 'true',
            }
        )
        return env

    @classmethod
    def missing(cls) -> str | None:
        return None if (RABBITMQ_SCRIPTS / 'rabbitmq-server').exists() else str(RABBITMQ_SCRIPTS / 'rabbitmq-server')

    def _command(self) -> list[str]:
        return [str(RABBITMQ_SCRIPTS / 'rabbitmq-server')]

    def _popen_options(self) -> dict:
        return {'env': self.env(), 'cwd': self.folder}

    def _serving(self) -> bool:
        if not _port_open(self.port):
            return False
        conn = kombu.Connection(self.url, connect_timeout=2)
        try:
            conn.ensure_connection(max_retries=0)
            return True
        except (OSError, kombu.exceptions.OperationalError, *conn.connection_errors):
            return False
        finally:
            conn.release()

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run ``rabbitmqctl -n NODE ...`` against this node only."""
        return subprocess.run(
            [str(RABBITMQ_SCRIPTS / 'rabbitmqctl'), '-n', self.node, *args],
            env=self.env(),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def url(self) -> str:
        """The AMQP URL of the default vhost (guest may log in from loopback)."""
        return f'amqp://guest:guest@127.0.0.1:{self.port}//'

    def _remove_data(self) -> None:
        for path in (self.mnesia, self.home):
            shutil.rmtree(path, ignore_errors=True)


@atexit.register
def _close_all() -> None:
    """Close every server a test left open, so that none outlives the test session."""
    for server in list(_OPEN):
        server.close()
