"""The CherryPy application shared by ``pacifica-notifications`` and uWSGI.

Database connections are opened and closed here, once per request, by two
hooks; handlers never manage them (the routes :mod:`fastpost` serves, outside
CherryPy's hooks, close theirs in one place too).  Starting a process around
it is :mod:`server`'s job.
"""

from __future__ import annotations

import cherrypy
from cherrypy.lib import reprconf
from peewee import DatabaseError

from . import fastpost, probes
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
        '/events': {'hooks.on_start_resource': open_connection},
    }


def mount(cpconfig: str = '') -> cherrypy.Application:
    """Mount the REST root at ``/`` with our settings, then the CherryPy file's; graft the fast ``POST`` routes.

    Serve ``cherrypy.tree`` (as the servers do), not the returned application,
    to have both.
    """
    cherrypy.config.update(GLOBAL_DEFAULTS)
    if cpconfig:
        cherrypy.config.update(cpconfig)
    app = cherrypy.tree.mount(Root(), '/', app_config())
    if cpconfig:
        app.merge(cpconfig)
    for path, probe in ((settings().status_path, probes.status_app), (settings().metrics_path, probes.metrics_app)):
        if path:
            cherrypy.tree.graft(probe(), path)
    for path, route in fastpost.ROUTES.items():
        tools = _tools_on(cpconfig, path)
        if tools:
            cherrypy.log(f'{path} is served by CherryPy, because the CherryPy config turns on {", ".join(tools)} there')
            continue
        headers_on = app.find_config(path, 'tools.response_headers.on', False)
        headers = app.find_config(path, 'tools.response_headers.headers', []) if headers_on else []
        max_bytes = app.find_config(path, 'request.body.maxbytes', settings().max_request_bytes)
        cherrypy.tree.graft(fastpost.PostApp(route, app, max_bytes, headers), path)
    return app


#: Tools the fast routes apply themselves.
_FAST_TOOLS = ('response_headers',)


def _tools_on(cpconfig: str, path: str) -> list[str]:
    """The tools the CherryPy file turns on for ``path`` (globally, at ``/`` or there) that the fast path lacks."""
    if not cpconfig:
        return []
    sections = reprconf.Parser().dict_from_file(cpconfig)
    names = set()
    for section in ('global', '/', path):
        for key, value in sections.get(section, {}).items():
            parts = key.split('.')
            if len(parts) == 3 and parts[0] == 'tools' and parts[2] == 'on' and value:
                names.add(parts[1])
    return sorted(name for name in names if name not in _FAST_TOOLS)
