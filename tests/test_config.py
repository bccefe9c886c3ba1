"""Configuration: built-in defaults, the INI file, environment variables, database URLs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from peewee import SqliteDatabase
from playhouse.pool import PooledMySQLDatabase, PooledPostgresqlDatabase

from pacifica.notifications.config import SETTINGS, ConfigError, data_dir, get_config, set_config_file, settings
from pacifica.notifications.database import configured_url, database_from_url

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(configure, tmp_path):
    """No configuration from the caller's environment."""
    configure(**{setting.env: None for setting in SETTINGS}, NOTIFICATIONS_DATA_DIR=str(tmp_path / 'data'))


def write_ini(path, text):
    path.write_text(text, encoding='utf-8')
    set_config_file(str(path))


def test_defaults(clean_env):
    config = settings()
    assert (config.user_header, config.default_user, config.policy_url) == ('Http-Remote-User', 'anonymous', '')
    assert (config.connect_attempts, config.connect_wait) == (10, 20.0)
    assert config.retry_schedule == (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    assert get_config().get('notifications', 'user_header') == 'Http-Remote-User'


def test_file_overrides_defaults_and_env_overrides_file(clean_env, configure, tmp_path):
    write_ini(
        tmp_path / 'n.cfg', '[notifications]\npolicy_url = http://127.0.0.1:8181\n[database]\nconnect_attempts = 3\n'
    )
    assert settings().policy_url == 'http://127.0.0.1:8181'
    assert settings().connect_attempts == 3
    configure(DATABASE_CONNECT_ATTEMPTS='7')
    assert settings().connect_attempts == 7
    assert settings().policy_url == 'http://127.0.0.1:8181'


def test_deleting_the_config_variable_means_no_file(clean_env, configure, tmp_path):
    write_ini(tmp_path / 'n.cfg', '[database]\nconnect_attempts = 3\n')
    assert settings().connect_attempts == 3
    configure(NOTIFICATIONS_CONFIG=None)
    assert settings().connect_attempts == 10


def ini_keys(text: str) -> set[tuple[str, str]]:
    """Every key the INI text shows, commented out (``; key = value``) or not."""
    keys, section = set(), 'DEFAULT'
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith('[') and line.endswith(']'):
            section = line[1:-1]
        elif '=' in line and (line.startswith(';') or line[0].isalpha()):
            key = line.lstrip('; ').split('=', 1)[0].strip()
            if key.isidentifier():
                keys.add((section, key))
    return keys


def test_the_example_config_file_shows_every_key_and_reads(clean_env):
    assert ini_keys((REPO / 'config.cfg').read_text(encoding='utf-8')) == {
        (setting.section, setting.key) for setting in SETTINGS
    }
    set_config_file(str(REPO / 'config.cfg'))
    assert settings().user_header == 'Http-Remote-User' and settings().peewee_url == ''


def test_missing_file_is_a_clear_error(clean_env, tmp_path):
    set_config_file(str(tmp_path / 'nope.cfg'))
    with pytest.raises(ConfigError, match=r'cannot read config file .*nope\.cfg'):
        get_config()


def test_bad_ini_is_a_clear_error(clean_env, tmp_path):
    with pytest.raises(ConfigError, match='not valid INI'):
        write_ini(tmp_path / 'bad.cfg', 'this is not ini\n')
        get_config()


@pytest.mark.parametrize(
    'env, value, message',
    [
        (
            'DATABASE_CONNECT_WAIT',
            'soon',
            r"\[database\] connect_wait \(DATABASE_CONNECT_WAIT\) = 'soon': "
            r'expected a number of at least 0 and at most 3600',
        ),
        ('RECOVER_AFTER', '0', r'recover_after .* expected a number of at least 1'),
        ('SWEEP_INTERVAL', '-1', r'sweep_interval .* expected a number of at least 0'),
        ('MAX_REQUEST_BYTES', '1.5', r'max_request_bytes .* expected a whole number'),
        ('RETRY_SCHEDULE', '5,x', r'retry_schedule .* expected seconds separated by commas'),
        ('RETRY_SCHEDULE', '5,-1', r'retry_schedule .* none negative|each from 0'),
        ('CONNECT_TIMEOUT', 'nan', r'connect_timeout .* expected a number'),
        ('POLICY_URL', 'localhost:8181', r'policy_url .* expected a URL starting http:// or https://'),
        ('USER_HEADER', 'Remote User', r'user_header .* expected a name without spaces'),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_what_is_expected(clean_env, configure, env, value, message):
    configure(**{env: value})
    with pytest.raises(ConfigError, match=message):
        settings()


def test_embedded_default_database_lives_in_data_folder(clean_env, tmp_path):
    assert not (tmp_path / 'data').exists()
    url = configured_url()
    assert (tmp_path / 'data').is_dir()
    assert url == f'sqlite:///{tmp_path / "data" / "notifications.sqlite3"}'
    assert data_dir() == tmp_path / 'data'


@pytest.mark.parametrize(
    'url, kind, name',
    [
        ('sqliteext:///db.sqlite3', SqliteDatabase, 'db.sqlite3'),
        ('sqlite:///db.sqlite3', SqliteDatabase, 'db.sqlite3'),
        ('postgres://u:p@127.0.0.1:5432/notes', PooledPostgresqlDatabase, 'notes'),
        ('postgresql://127.0.0.1/notes', PooledPostgresqlDatabase, 'notes'),
        ('postgresql+pool://127.0.0.1/notes', PooledPostgresqlDatabase, 'notes'),
        ('mysql://root@127.0.0.1/notes', PooledMySQLDatabase, 'notes'),
        ('mysql+pool://root@127.0.0.1/notes', PooledMySQLDatabase, 'notes'),
    ],
)
def test_database_urls(url, kind, name):
    db = database_from_url(url)
    assert isinstance(db, kind)
    assert db.database == name


def test_pool_settings_from_url_win():
    db = database_from_url('postgres://127.0.0.1/notes?max_connections=4')
    assert db._max_connections == 4


@pytest.mark.parametrize(
    'url, message',
    [
        ('oracle://x/y', 'unknown scheme'),
        ('postgres://127.0.0.1', 'names no database'),
    ],
)
def test_bad_database_urls(url, message):
    with pytest.raises(ConfigError, match=message):
        database_from_url(url)


SERVER = ['-m', 'pacifica.notifications', '-p', '1']
WORKER = ['-m', 'celery', '-A', 'pacifica.notifications.tasks', 'worker']
COMMAND = ['-c', 'from pacifica.notifications.__main__ import cmd_main; cmd_main()', 'dbchk']
WSGI = ['-c', 'import pacifica.notifications.wsgi']  # as uWSGI loads it

STOPPED_AT_START = [
    # a driver that is not installed (hidden from the child): the extra that installs it
    ('redis', {'BROKER_URL': 'redis://127.0.0.1:6379/0'}, WORKER, 'pacifica-notifications[redis]'),
    ('redis', {'BROKER_URL': 'redis://127.0.0.1:6379/0'}, SERVER, 'pacifica-notifications[redis]'),
    ('psycopg2', {'PEEWEE_URL': 'postgres://127.0.0.1:1/none'}, COMMAND, 'pacifica-notifications[postgres]'),
    ('pymysql', {'PEEWEE_URL': 'mysql://127.0.0.1:1/none'}, SERVER, 'pacifica-notifications[mysql]'),
    # a value of the wrong type: the key, the value and what is expected
    (None, {'RECOVER_AFTER': 'soon'}, SERVER, "recover_after (RECOVER_AFTER) = 'soon': expected a number"),
    (None, {'SWEEP_INTERVAL': 'often'}, WORKER, "sweep_interval (SWEEP_INTERVAL) = 'often': expected"),
    ('psycopg2', {'PEEWEE_URL': 'postgres://127.0.0.1:1/none'}, WORKER, 'pacifica-notifications[postgres]'),
    (None, {'MAX_REQUEST_BYTES': '1e'}, COMMAND, "max_request_bytes (MAX_REQUEST_BYTES) = '1e': expected"),
    (None, {'PEEWEE_URL': 'oracle://x/y'}, SERVER, "peewee_url 'oracle://x/y': unknown scheme"),
    (None, {'READ_TIMEOUT': '0'}, WSGI, "read_timeout (READ_TIMEOUT) = '0': expected a number of at least 0.001"),
]


@pytest.mark.parametrize('module, settings, args, expected', STOPPED_AT_START)
def test_what_cannot_be_used_stops_each_process_at_start_with_one_line(service_env, module, settings, args, expected):
    blocked = ('pymysql', 'MySQLdb') if module == 'pymysql' else (module,) if module else ()
    hide = ''.join(f'sys.modules[{name!r}] = None; ' for name in blocked)
    code = f'import runpy, sys; {hide}sys.argv = sys.argv[1:]; '
    if args[0] == '-m':
        code += f'runpy.run_module({args[1]!r}, run_name="__main__", alter_sys=True)'
        argv = [args[1], *args[2:]]
    else:
        code += args[1]
        argv = ['x', *args[2:]]
    done = subprocess.run(
        [sys.executable, '-c', code, *argv],
        env={**service_env, **settings},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and 'Traceback' not in done.stderr, done.stderr


@pytest.mark.parametrize('url', ['filesystem://', 'pacifica-filesystem://localhost/'])
def test_a_filesystem_broker_url_gets_our_transport(service_env, configure, url):
    import kombu

    from pacifica.notifications import filesystem_transport
    from pacifica.notifications.celeryconf import celery_settings

    configure(BROKER_URL=url)
    with kombu.Connection(celery_settings()['broker_read_url']) as conn:
        assert isinstance(conn.transport, filesystem_transport.Transport)
