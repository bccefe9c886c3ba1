"""Configuration: built-in defaults, the INI file, environment variables, database URLs."""
from __future__ import annotations

import subprocess
import sys

import pytest
from peewee import SqliteDatabase
from playhouse.pool import PooledMySQLDatabase, PooledPostgresqlDatabase

from pacifica.notifications.config import ConfigError, data_dir, get_config, get_number, set_config_file
from pacifica.notifications.database import configured_url, database_from_url


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No configuration from the caller's environment."""
    for name in ('NOTIFICATIONS_CONFIG', 'PEEWEE_URL', 'POLICY_URL', 'BROKER_URL', 'BACKEND_URL',
                 'DATABASE_CONNECT_ATTEMPTS', 'DATABASE_CONNECT_WAIT', 'USER_HEADER', 'DEFAULT_USER'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('NOTIFICATIONS_DATA_DIR', str(tmp_path / 'data'))
    get_config.cache_clear()
    yield monkeypatch
    get_config.cache_clear()


def write_ini(path, text):
    path.write_text(text, encoding='utf-8')
    set_config_file(str(path))


def test_defaults(clean_env):
    config = get_config()
    assert config.get('notifications', 'user_header') == 'Http-Remote-User'
    assert config.get('notifications', 'default_user') == 'anonymous'
    assert config.get('notifications', 'policy_url') == ''
    assert get_number('database', 'connect_attempts') == 10
    assert get_number('database', 'connect_wait', float) == 20.0


def test_file_overrides_defaults_and_env_overrides_file(clean_env, tmp_path):
    write_ini(tmp_path / 'n.cfg', '[notifications]\npolicy_url = http://127.0.0.1:8181\n'
              '[database]\nconnect_attempts = 3\n')
    assert get_config().get('notifications', 'policy_url') == 'http://127.0.0.1:8181'
    assert get_number('database', 'connect_attempts') == 3
    clean_env.setenv('DATABASE_CONNECT_ATTEMPTS', '7')
    get_config.cache_clear()
    assert get_number('database', 'connect_attempts') == 7
    assert get_config().get('notifications', 'policy_url') == 'http://127.0.0.1:8181'


def test_repo_config_file_reads(clean_env):
    set_config_file('config.cfg')
    assert get_config().get('notifications', 'user_header') == 'Http-Remote-User'
    assert get_config().get('database', 'peewee_url') == ''


def test_missing_file_is_a_clear_error(clean_env, tmp_path):
    set_config_file(str(tmp_path / 'nope.cfg'))
    with pytest.raises(ConfigError, match='cannot read config file .*nope.cfg'):
        get_config()


def test_bad_ini_is_a_clear_error(clean_env, tmp_path):
    with pytest.raises(ConfigError, match='not valid INI'):
        write_ini(tmp_path / 'bad.cfg', 'this is not ini\n')
        get_config()


def test_non_numeric_setting_named(clean_env):
    clean_env.setenv('DATABASE_CONNECT_WAIT', 'soon')
    with pytest.raises(ConfigError, match=r'\[database\] connect_wait'):
        get_number('database', 'connect_wait', float)


def test_embedded_default_database_lives_in_data_folder(clean_env, tmp_path):
    assert not (tmp_path / 'data').exists()
    url = configured_url()
    assert (tmp_path / 'data').is_dir()
    assert url == f"sqlite:///{tmp_path / 'data' / 'notifications.sqlite3'}"
    assert data_dir() == tmp_path / 'data'


@pytest.mark.parametrize('url, kind, name', [
    ('sqliteext:///db.sqlite3', SqliteDatabase, 'db.sqlite3'),
    ('sqlite:///db.sqlite3', SqliteDatabase, 'db.sqlite3'),
    ('postgres://u:p@127.0.0.1:5432/notes', PooledPostgresqlDatabase, 'notes'),
    ('postgresql://127.0.0.1/notes', PooledPostgresqlDatabase, 'notes'),
    ('postgresql+pool://127.0.0.1/notes', PooledPostgresqlDatabase, 'notes'),
    ('mysql://root@127.0.0.1/notes', PooledMySQLDatabase, 'notes'),
    ('mysql+pool://root@127.0.0.1/notes', PooledMySQLDatabase, 'notes'),
])
def test_database_urls(url, kind, name):
    db = database_from_url(url)
    assert isinstance(db, kind)
    assert db.database == name


def test_pool_settings_from_url_win():
    db = database_from_url('postgres://127.0.0.1/notes?max_connections=4')
    assert db._max_connections == 4


@pytest.mark.parametrize('url, message', [
    ('oracle://x/y', 'unknown scheme'),
    ('postgres://127.0.0.1', 'names no database'),
])
def test_bad_database_urls(url, message):
    with pytest.raises(ConfigError, match=message):
        database_from_url(url)


DRIVER_MISSING = [
    ('redis', {'BROKER_URL': 'redis://127.0.0.1:6379/0'},
     ['-m', 'celery', '-A', 'pacifica.notifications.tasks', 'worker'], "pacifica-notifications[redis]"),
    ('redis', {'BROKER_URL': 'redis://127.0.0.1:6379/0'},
     ['-m', 'pacifica.notifications', '-p', '1'], "pacifica-notifications[redis]"),
    ('psycopg2', {'PEEWEE_URL': 'postgres://127.0.0.1:1/none'},
     ['-c', 'from pacifica.notifications.__main__ import cmd_main; cmd_main()', 'dbchk'],
     "pacifica-notifications[postgres]"),
    ('pymysql', {'PEEWEE_URL': 'mysql://127.0.0.1:1/none'},
     ['-m', 'pacifica.notifications', '-p', '1'], "pacifica-notifications[mysql]"),
]


@pytest.mark.parametrize('module, settings, args, extra', DRIVER_MISSING)
def test_a_missing_driver_is_one_line_naming_the_extra(service_env, module, settings, args, extra):
    blocked = 'MySQLdb' if module == 'pymysql' else None
    hide = ''.join(f'sys.modules[{name!r}] = None; ' for name in (module, blocked) if name)
    code = f'import runpy, sys; {hide}sys.argv = sys.argv[1:]; '
    if args[0] == '-m':
        code += f'runpy.run_module({args[1]!r}, run_name="__main__", alter_sys=True)'
        argv = [args[1], *args[2:]]
    else:
        code += args[1]
        argv = ['x', *args[2:]]
    done = subprocess.run([sys.executable, '-c', code, *argv], env={**service_env, **settings},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and extra in lines[0] and 'Traceback' not in done.stderr, done.stderr
