"""The one database every model uses: bound on first use, never shared across a fork.

:data:`DB` is a proxy that binds itself to the configured database the first
time anything uses it (a query, ``DB.drop_tables``, a model's
``create_table``), so code written against the seed's module reference works
without a set-up call; binding connects to nothing.

Connections are per thread (peewee's default) and pooled for server
databases.  A pool must not cross a fork: a forked child (a Celery prefork
pool process) that used a connection inherited from its parent would talk on
the parent's socket, and each would read the other's replies.  So a child
starts with a new, empty database object, and the connections it inherited
are dropped without a word to the server: the socket under each is first
pointed at ``/dev/null``, so that closing it cannot send the server the
"terminate" that would end the parent's session.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from peewee import Database, DatabaseError, DatabaseProxy, SqliteDatabase
from playhouse.pool import PooledDatabase, PooledPostgresqlDatabase

from .database import configured_url, database_from_url


class LazyDatabase(DatabaseProxy):
    """A database proxy that binds itself to the configured database on first use."""

    __slots__ = ()

    def bound(self) -> Database:
        """The database in use, binding the configured one if none is bound yet."""
        if self.obj is None:
            bind_database()
        return self.obj

    def __getattr__(self, attr: str) -> Any:
        if attr in DatabaseProxy.__slots__:
            raise AttributeError(attr)
        return getattr(self.bound(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr not in DatabaseProxy.__slots__:
            raise AttributeError('Cannot set attribute on proxy.')
        object.__setattr__(self, attr, value)

    def __enter__(self):
        return self.bound().__enter__()

    def __exit__(self, *exc):
        return self.bound().__exit__(*exc)


#: The one database every model uses.
DB = LazyDatabase()

_BIND_LOCK = threading.Lock()
#: The URL the bound database was built from, so that a forked child can build its own.
_BOUND: dict[str, str] = {}


def bind_database(url: str | None = None) -> Database:
    """Point every model at the database ``url`` names (default: the configured one).

    Builds the database object but opens no connection.
    """
    with _BIND_LOCK:
        url = url or configured_url()
        database = database_from_url(url)
        if not _BOUND:
            os.register_at_fork(after_in_child=_start_afresh_in_child)
        _BOUND['url'] = url
        DB.initialize(database)
    return database


#: Seconds a pooled PostgreSQL connection may sit unused before it is pinged at checkout.
PING_AFTER = 10.0
#: When each pooled connection (by id) was last checked out.
_LAST_USED: dict[int, float] = {}


def connect() -> None:
    """Make sure this thread holds a connection (the one place connections are opened).

    Connecting a second time is harmless: an open connection is reused.  A
    pooled PostgreSQL connection that sat in the pool across a database
    restart fails on first use; one ``SELECT 1`` finds it and replaces it, so
    a request or task never does (peewee's MySQL pool pings by itself).  A
    connection used within :data:`PING_AFTER` seconds is not pinged: that
    would be one round trip more per request or task.
    """
    if DB.connect(reuse_if_open=True) and isinstance(DB.obj, PooledPostgresqlDatabase):
        conn, now = DB.connection(), time.monotonic()
        if now - _LAST_USED.get(id(conn), 0.0) > PING_AFTER:
            try:
                DB.execute_sql('SELECT 1')
            except DatabaseError:
                DB.manual_close()
                DB.connect()
                conn = DB.connection()
        if len(_LAST_USED) > 4096:
            _LAST_USED.clear()
        _LAST_USED[id(conn)] = now


def close() -> None:
    """Close this thread's connection, or give it back to the pool; closing twice is harmless."""
    if DB.obj is not None and not DB.is_closed():
        DB.close()


def write_transaction() -> Any:
    """A transaction that reads and then writes.

    On SQLite it takes the write lock at once (``BEGIN IMMEDIATE``): a
    deferred transaction that read first cannot take it later while another
    connection has written, and fails at once with "database is locked"
    instead of waiting its turn.
    """
    if isinstance(DB.bound(), SqliteDatabase):
        return DB.atomic('IMMEDIATE')
    return DB.atomic()


def _inherited_connections(database: Database) -> list:
    """Every connection object a database held at the fork: this thread's and the pool's."""
    conns = []
    state = getattr(database, '_state', None)
    if state is not None and getattr(state, 'conn', None) is not None:
        conns.append(state.conn)
    if isinstance(database, PooledDatabase):
        conns.extend(entry.connection for entry in database._in_use.values())
        conns.extend(entry[-1] for entry in database._connections)
    return conns


def _socket_fd(conn: Any) -> int | None:
    """The file descriptor of a driver connection's socket, if it has one (SQLite has none)."""
    for holder in (conn, getattr(conn, '_sock', None)):  # psycopg2, then PyMySQL
        try:
            fd = holder.fileno()  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - drivers differ; no socket is an answer too
            continue
        if isinstance(fd, int) and fd >= 0:
            return fd
    return None


def _start_afresh_in_child() -> None:
    """In a forked child: abandon the inherited connections quietly and bind a new database."""
    database = DB.obj
    if database is None:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in _inherited_connections(database):
            fd = _socket_fd(conn)
            if fd is not None:
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    DB.initialize(database_from_url(_BOUND['url']))
