"""The one database every model uses: bound on first use.

:data:`DB` is a proxy that binds itself to the configured database the first
time anything uses it (a query, ``DB.drop_tables``, a model's
``create_table``), so code written against the seed's module reference works
without a set-up call; binding connects to nothing.
"""
from __future__ import annotations

import threading
from typing import Any

from peewee import Database, DatabaseProxy

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


def bind_database(url: str | None = None) -> Database:
    """Point every model at the database ``url`` names (default: the configured one).

    Builds the database object but opens no connection.
    """
    with _BIND_LOCK:
        url = url or configured_url()
        database = database_from_url(url)
        DB.initialize(database)
    return database

