"""Shared fixtures: a real database per test (SQLite by default) and the CLI runner.

Set ``TEST_PEEWEE_URL`` to run the database tests against PostgreSQL or
MySQL/MariaDB; ``.ci/run`` does so for each of them.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pacifica.notifications import orm
from pacifica.notifications.config import get_config
from pacifica.notifications.database import database_from_url

TABLES = ('eventlogmatch', 'eventlog', 'notificationsystem', 'eventmatch')
FIXTURES = Path(__file__).parent / 'fixtures'


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The database under test: ``TEST_PEEWEE_URL`` or a fresh SQLite file."""
    return os.environ.get('TEST_PEEWEE_URL') or f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def service_env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Environment for this test's processes (and this one): its own database and data folder."""
    env = {
        'PEEWEE_URL': db_url,
        'NOTIFICATIONS_DATA_DIR': str(tmp_path / 'data'),
        'DATABASE_CONNECT_ATTEMPTS': '1',
        'DATABASE_CONNECT_WAIT': '0',
    }
    monkeypatch.delenv('NOTIFICATIONS_CONFIG', raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_config.cache_clear()
    yield {**os.environ, **env}
    get_config.cache_clear()


@pytest.fixture
def database(service_env: dict, db_url: str):
    """The ORM bound to an empty test database; tables are dropped before and after."""
    db = database_from_url(db_url)
    orm.bind_database(db)
    drop_tables(db)
    yield db
    drop_tables(db)
    db.close()
    if hasattr(db, 'close_all'):
        db.close_all()


def drop_tables(db) -> None:
    """Remove every table the service knows of, children first."""
    db.connect(reuse_if_open=True)
    for table in TABLES:
        db.execute_sql(f'DROP TABLE IF EXISTS {table}')
    db.close()


@pytest.fixture
def synced(database):
    """A database at the current schema."""
    database.connect(reuse_if_open=True)
    orm.OrmSync.update_tables()
    yield database
    database.close()


def run_cmd(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run ``pacifica-notifications-cmd`` as a user would and capture what it says."""
    return subprocess.run([script('pacifica-notifications-cmd'), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def script(name: str) -> str:
    """Path of an installed console script of this environment."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f'{name} is not installed: pip install -e .'
    return str(path)
