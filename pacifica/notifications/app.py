"""Assemble the CherryPy application shared by ``pacifica-notifications`` and uWSGI.

Database connections are opened and closed here, once per request, by two
hooks; handlers never manage them.
"""
from __future__ import annotations

import logging
import threading

import cherrypy
from peewee import DatabaseError

from .celeryconf import broker_url, is_embedded
from .config import get_config, get_number
from .database import configured_url, require_driver
from .embedded import EmbeddedWorker
from .orm import SCHEMA_MAJOR, BaseModel, NotificationSystem, OrmSync, SchemaError
from .rest import Root, error_page_default, error_response

NO_POLICY_WARNING = (
    '*** WARNING: no policy_url is configured: the policy check is SKIPPED and every matching '
    'subscription receives every event. Set [notifications] policy_url (POLICY_URL) in production. ***')

#: Engine and server settings used unless a CherryPy config file says otherwise.
GLOBAL_DEFAULTS = {
    'engine.autoreload.on': False,
    'log.screen': True,
    'server.socket_host': '127.0.0.1',
    'server.socket_port': 8070,
    'server.thread_pool': 16,
}


def open_connection() -> None:
    """Give this request a database connection, or answer 503 when there is none."""
    try:
        BaseModel.database_connect()
    except DatabaseError as exc:
        cherrypy.log(f'database unavailable: {exc}'.strip())
        raise cherrypy.HTTPError(503, 'the database is unavailable; try again shortly') from None


def close_connection() -> None:
    """Return this request's connection to the pool (or close it)."""
    BaseModel.database_close()


def unpad_error() -> None:
    """Drop the blanks CherryPy pads short error pages with for old Internet Explorers."""
    response = cherrypy.serving.response
    if response.status is not None and int(str(response.status).split()[0]) >= 400:
        body = response.collapse_body().rstrip(b' ')
        response.body = body
        response.headers['Content-Length'] = str(len(body))


def app_config() -> dict:
    """The application's own settings: dispatch, JSON errors, body limits, database hooks."""
    return {
        '/': {
            'request.dispatch': cherrypy.dispatch.MethodDispatcher(),
            'request.show_tracebacks': False,
            'request.error_response': error_response,
            'error_page.default': error_page_default,
            'request.body.processors': {},
            'request.body.maxbytes': int(get_number('notifications', 'max_request_bytes')),
            'hooks.on_start_resource': open_connection,
            'hooks.on_end_request': close_connection,
            'hooks.before_finalize': unpad_error,
            'hooks.after_error_response': unpad_error,
        },
    }


def mount(cpconfig: str = '') -> cherrypy.Application:
    """Mount the REST root at ``/`` with our settings, then the CherryPy file's."""
    cherrypy.config.update(GLOBAL_DEFAULTS)
    if cpconfig:
        cherrypy.config.update(cpconfig)
    app = cherrypy.tree.mount(Root(), '/', app_config())
    if cpconfig:
        app.merge(cpconfig)
    return app


def check_settings() -> None:
    """Raise :class:`ConfigError` for a setting the service cannot use (a driver not installed)."""
    broker_url()
    require_driver(configured_url())


def check_database() -> None:
    """Wait for the database and raise why the service cannot start, if it cannot.

    The embedded default database (no ``peewee_url`` configured) is the
    service's own, so its schema is created or upgraded here; a configured
    database is left to ``pacifica-notifications-cmd dbsync``.  Raises
    :class:`ConfigError`, :class:`DatabaseUnavailable` or :class:`SchemaError`.
    """
    try:
        OrmSync.dbconn_blocking()
        if not get_config().get('database', 'peewee_url'):
            OrmSync.update_tables()
        if not NotificationSystem.is_safe():
            major, minor = NotificationSystem.get_version()
            raise SchemaError(f'database schema is {major}.{minor}, this code needs {SCHEMA_MAJOR}.x; '
                              'run pacifica-notifications-cmd dbsync')
    finally:
        BaseModel.database_close()


def serve(cpconfig: str = '', address: str | None = None, port: int | None = None,
          worker: bool = True, stop_after: float | None = None) -> None:
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
    if not get_config().get('notifications', 'policy_url'):
        cherrypy.log(NO_POLICY_WARNING, severity=logging.WARNING)
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
