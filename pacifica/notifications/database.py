"""Turn a configured database URL into a peewee database.

The seed's URLs (``sqliteext:///db.sqlite3``) predate peewee 4, which dropped
the ``sqliteext`` scheme; it is accepted here as plain SQLite.  Server
databases (PostgreSQL, MySQL/MariaDB) are always pooled: a new server
connection per request or task costs far more than the work itself.
"""

from __future__ import annotations

import importlib.util
from urllib.parse import urlparse

from peewee import Database, MySQLDatabase, SqliteDatabase
from playhouse import db_url
from playhouse.pool import PooledMySQLDatabase, PooledPostgresqlDatabase, PooledSqliteDatabase

from .config import ConfigError, data_dir, settings

#: peewee's own schemes, with the seed's ``sqliteext`` and pooled server databases.
SCHEMES = {
    **db_url.schemes,
    'sqliteext': SqliteDatabase,
    'sqliteext+pool': PooledSqliteDatabase,
    'postgres': PooledPostgresqlDatabase,
    'postgresql': PooledPostgresqlDatabase,
    'mysql': PooledMySQLDatabase,
}

#: MySQL's plain DATETIME drops microseconds and its TEXT stops at 64 KiB;
#: timestamps keep microseconds and events may be as large as a request.
MYSQL_FIELD_TYPES = {'DATETIME': 'DATETIME(6)', 'TEXT': 'LONGTEXT'}

#: Pool settings used unless the URL's query string says otherwise.
POOL_DEFAULTS = {'max_connections': 32, 'stale_timeout': 300, 'timeout': 10}

#: SQLite settings that let the API and workers share one file.
SQLITE_DEFAULTS = {'pragmas': {'journal_mode': 'wal', 'busy_timeout': 10000, 'foreign_keys': 1}}


#: Per URL scheme (before any ``+``): the driver modules that serve it, and the extra that installs one.
DRIVERS = {
    'postgres': (('psycopg2',), 'postgres'),
    'postgresql': (('psycopg2',), 'postgres'),
    'mysql': (('pymysql', 'MySQLdb'), 'mysql'),
}


def require_driver(url: str) -> None:
    """Raise a one-line :class:`ConfigError` when the database's driver is not installed."""
    scheme = urlparse(url).scheme.split('+', 1)[0]
    modules, extra = DRIVERS.get(scheme, ((), ''))
    if modules and not any(importlib.util.find_spec(module) for module in modules):
        raise ConfigError(
            f'[database] peewee_url {scheme}:// needs the {modules[0]} package: '
            f"pip install 'pacifica-notifications[{extra}]'"
        )


def embedded_url() -> str:
    """Return the URL of the embedded default: a SQLite file in the data folder."""
    return f'sqlite:///{data_dir() / "notifications.sqlite3"}'


def configured_url() -> str:
    """Return the database URL from configuration, or the embedded default."""
    return settings().peewee_url or embedded_url()


def database_from_url(url: str) -> Database:
    """Build (but do not connect) the peewee database a URL names."""
    parsed = urlparse(url)
    db_class = SCHEMES.get(parsed.scheme)
    if db_class is None:
        raise ConfigError(f'[database] peewee_url {url!r}: unknown scheme {parsed.scheme!r}')
    require_driver(url)
    params = db_url.parseresult_to_dict(parsed)
    if not params.get('database'):
        raise ConfigError(f'[database] peewee_url {url!r} names no database')
    if 'sqlite' in parsed.scheme:
        params = {**SQLITE_DEFAULTS, **params}
    elif issubclass(db_class, (PooledPostgresqlDatabase, PooledMySQLDatabase)):
        params = {**POOL_DEFAULTS, **params}
    if issubclass(db_class, MySQLDatabase):
        params.setdefault('field_types', MYSQL_FIELD_TYPES)
    return db_class(**params)
