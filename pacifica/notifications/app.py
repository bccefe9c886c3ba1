"""The CherryPy application shared by ``pacifica-notifications`` and uWSGI.

Database connections are opened and closed here, once per request, by two
hooks; handlers never manage them.  Starting a process around it is
:mod:`server`'s job.
"""

from __future__ import annotations

import cherrypy
from peewee import DatabaseError

from .config import settings
from .models import BaseModel
from .rest import Root, error_page_default, error_response

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
            'request.body.maxbytes': settings().max_request_bytes,
            'hooks.on_end_request': close_connection,
            'hooks.before_finalize': unpad_error,
            'hooks.after_error_response': unpad_error,
        },
        # /receive connects only in the request that commits a group (intake.GroupCommit).
        '/eventmatch': {'hooks.on_start_resource': open_connection},
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
