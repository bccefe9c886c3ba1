"""Shared fixtures: a real database per test (SQLite by default), a broker, the CLI runner.

Set ``TEST_PEEWEE_URL`` to run against PostgreSQL or MySQL/MariaDB and
``TEST_BROKER_URL`` to run against RabbitMQ or Redis (default: the embedded
filesystem broker in each test's own data folder); ``.ci/run`` does so.
Every environment gets its own queue, deleted when its test is done.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kombu
import pytest

from pacifica.notifications import config, matcher, orm
from pacifica.notifications.orm import EventMatch, utcnow

from .httpfakes import Recorder
from .procs import notifications_server, script, uwsgi_server

#: Figures the fault-injection tests report, printed at the end of the run.
FAULT_REPORTS = pytest.StashKey[list]()


def pytest_configure(config):
    config.addinivalue_line('markers', 'fault: fault-injection tests (run alone with -m fault)')


def pytest_terminal_summary(terminalreporter, config):
    reports = config.stash.get(FAULT_REPORTS, [])
    if reports:
        terminalreporter.section('fault injection: every accepted event delivered')
        for name, figures in reports:
            terminalreporter.write_line(f'{name}: {figures}')


TABLES = ('eventlogmatch', 'eventlog', 'notificationsystem', 'eventmatch')
FIXTURES = Path(__file__).parent / 'fixtures'


def make_db_url(folder: Path) -> str:
    """The database under test: ``TEST_PEEWEE_URL`` or a SQLite file in ``folder``."""
    return os.environ.get('TEST_PEEWEE_URL') or f'sqlite:///{folder / "test.sqlite3"}'


def make_env(folder: Path, db_url: str) -> dict:
    """Settings for the service's processes: this database, a private data folder and queue."""
    env = {
        'PEEWEE_URL': db_url,
        'NOTIFICATIONS_DATA_DIR': str(folder / 'data'),
        'DATABASE_CONNECT_ATTEMPTS': '1',
        'DATABASE_CONNECT_WAIT': '0',
        'CELERY_QUEUE': f'test-{uuid.uuid4().hex[:12]}',
    }
    if os.environ.get('TEST_BROKER_URL'):
        env['BROKER_URL'] = os.environ['TEST_BROKER_URL']
    return env


def delete_queue(env: dict) -> None:
    """Remove a test's queue from a shared broker (the embedded one lives in its folder)."""
    if env.get('BROKER_URL'):
        with kombu.Connection(env['BROKER_URL'], connect_timeout=5) as conn:
            kombu.Queue(env['CELERY_QUEUE']).bind(conn.default_channel).delete()


def child_env(settings: dict) -> dict:
    """The environment for a child process: ours minus any service config, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if k != 'NOTIFICATIONS_CONFIG'}
    return {**env, **settings}


def bind_empty(db_url: str):
    """Bind the ORM to the test database with none of our tables in it (and no copy of old subscriptions)."""
    db = orm.bind_database(db_url)
    matcher.reset()
    drop_tables(db)
    return db


def drop_tables(db) -> None:
    """Remove every table the service knows of, children first."""
    db.connect(reuse_if_open=True)
    for table in TABLES:
        db.execute_sql(f'DROP TABLE IF EXISTS {table}')
    db.close()


def release(db) -> None:
    """Close every connection the test process holds."""
    if not db.is_closed():
        db.close()
    if hasattr(db, 'close_all'):
        db.close_all()


@pytest.fixture(autouse=True)
def clean_config(monkeypatch: pytest.MonkeyPatch):
    """Every test starts from the built-in defaults: no service INI file, nothing read yet."""
    monkeypatch.delenv('NOTIFICATIONS_CONFIG', raising=False)
    config.reset()
    yield
    config.reset()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch):
    """``configure(NAME=value, ...)``: settings for this test, by environment variable, read afresh.

    ``None`` unsets a variable.  Everything is undone after the test.
    """

    def apply(**values) -> None:
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))
        config.reset()

    return apply


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return make_db_url(tmp_path)


@pytest.fixture
def service_env(tmp_path: Path, db_url: str, configure) -> dict:
    """Environment for this test's processes (and this one): its own database and data folder."""
    settings = make_env(tmp_path, db_url)
    configure(**settings)
    yield child_env(settings)
    delete_queue(settings)


@pytest.fixture
def database(service_env: dict, db_url: str):
    """The ORM bound to an empty test database; tables are dropped before and after."""
    db = bind_empty(db_url)
    yield db
    drop_tables(db)
    release(db)


@pytest.fixture
def synced(database):
    """A database at the current schema."""
    database.connect(reuse_if_open=True)
    orm.OrmSync.update_tables()
    yield database
    database.close()


@pytest.fixture
def peers(synced, configure):
    """A policy server and a target server; the policy URL configured, one retry after 1 s."""
    policy, target = Recorder(), Recorder()
    configure(POLICY_URL=policy.url, RETRY_SCHEDULE='1')
    yield policy, target
    policy.close()
    target.close()


def run_cmd(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run ``pacifica-notifications-cmd`` as a user would and capture what it says."""
    return subprocess.run(
        [script('pacifica-notifications-cmd'), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    """The service as deployed (see :mod:`tests.stack`), one per test module."""
    from .stack import Stack  # here, not at the top: that module imports this one

    stack = Stack(tmp_path_factory.mktemp('stack'))
    yield stack
    stack.close()


@pytest.fixture
def case(stack):
    """A fresh user and target path; afterwards every subscription is retired (as the API deletes: ``updated`` too)."""
    name = uuid.uuid4().hex[:8]
    yield f'user-{name}', f'/t/{name}'
    now = utcnow()
    EventMatch.update(deleted=now, updated=now).where(EventMatch.deleted.is_null()).execute()


@contextmanager
def served_api(folder: Path, uwsgi: bool = False, **settings: str) -> Iterator[str]:
    """A synced database and a real API server (no worker) in front of it, with ``settings``; yields its URL."""
    url = make_db_url(folder)
    db = bind_empty(url)
    db.connect(reuse_if_open=True)
    orm.OrmSync.update_tables()
    db.close()
    env = child_env({**make_env(folder, url), **settings})
    if uwsgi:
        server = uwsgi_server(env, folder / 'server.log')
    else:
        server = notifications_server(env, folder / 'server.log', '--no-worker')
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()
        if 'BROKER_URL' not in settings:  # a broker the test chose (one that is down, say) holds no queue of ours
            delete_queue(env)
        drop_tables(db)
        release(db)
