"""Starting ``pacifica-notifications``: check the settings and the database, then serve.

The checks raise (:class:`ConfigError`, :class:`DatabaseUnavailable`,
:class:`SchemaError`) and :mod:`__main__` says why in one line.
"""

from __future__ import annotations

import logging
import threading

import cherrypy

from . import sealing, subscriptions
from .app import mount
from .celeryconf import broker_url, is_embedded
from .config import ConfigError, settings
from .database import configured_url, database_from_url
from .embedded import EmbeddedWorker
from .models import SCHEMA_MAJOR, BaseModel, NotificationSystem
from .schema import OrmSync, SchemaError

NO_POLICY_WARNING = (
    '*** WARNING: no policy_url is configured: the policy check is SKIPPED and every matching '
    'subscription receives every event. Set [notifications] policy_url (POLICY_URL) in production. ***'
)


def check_settings() -> None:
    """Raise :class:`ConfigError` naming the first setting the service cannot use.

    A value of the wrong type or range, an unknown URL scheme, a driver that
    is not installed: all found before anything starts.
    """
    settings()
    broker_url()
    database_from_url(configured_url())


def check_database() -> None:
    """Wait for the database and raise why the service cannot start, if it cannot.

    The embedded default database (no ``peewee_url`` configured) is the
    service's own, so its schema is created or upgraded here; a configured
    database is left to ``pacifica-notifications-cmd dbsync``.  Raises
    :class:`ConfigError`, :class:`DatabaseUnavailable` or :class:`SchemaError`.
    """
    try:
        OrmSync.dbconn_blocking()
        if not settings().peewee_url:
            OrmSync.update_tables()
        if not NotificationSystem.is_safe():
            major, minor = NotificationSystem.get_version()
            raise SchemaError(
                f'database schema is {major}.{minor}, this code needs {SCHEMA_MAJOR}.x; '
                'run pacifica-notifications-cmd dbsync'
            )
        check_secret_key()
    finally:
        BaseModel.database_close()


def check_secret_key() -> None:
    """Raise :class:`ConfigError` if ``secret_key`` cannot open the signing secrets in the database."""
    try:
        subscriptions.check_secrets()
    except sealing.SealError as exc:
        raise ConfigError(f'[notifications] secret_key (SECRET_KEY): {exc}') from None


def serve(
    cpconfig: str = '',
    address: str | None = None,
    port: int | None = None,
    worker: bool = True,
    stop_after: float | None = None,
) -> None:
    """Serve the application with CherryPy's own server until stopped (SIGINT, SIGTERM).

    On the embedded broker the server also runs the worker that consumes it,
    unless ``worker`` is False (workers are then started separately).  With
    ``stop_after`` it stops by itself after that many seconds (for tests).
    """
    mount(cpconfig)
    if address is not None:
        cherrypy.config.update({'server.socket_host': address})
    if port is not None:
        cherrypy.config.update({'server.socket_port': port})
    if not settings().policy_url:
        cherrypy.log(NO_POLICY_WARNING, severity=logging.WARNING)
    if not settings().secret_key:
        cherrypy.log(sealing.NO_KEY_WARNING, severity=logging.WARNING)
    if worker and is_embedded():
        EmbeddedWorker(cherrypy.engine).subscribe()
    # Ctrl-C stops the server even where SIGINT was ignored when it started
    # (a shell's background job), like SIGTERM does.
    cherrypy.engine.signal_handler.handlers['SIGINT'] = cherrypy.engine.exit
    cherrypy.engine.signals.subscribe()
    if stop_after is not None:
        timer = threading.Timer(stop_after, cherrypy.engine.exit)
        timer.daemon = True
        timer.start()
    cherrypy.engine.start()
    cherrypy.engine.block()
