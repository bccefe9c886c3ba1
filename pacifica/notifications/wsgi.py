"""The WSGI interface module for notifications.

``uwsgi --http-socket :8070 --master --module pacifica.notifications.wsgi``
serves :data:`application`.  The CherryPy file named by
``NOTIFICATIONS_CPCONFIG`` is applied when set.  Building the application
connects to nothing: each request opens its database connection.
"""

import logging
import sys

import cherrypy

from .app import mount
from .config import ConfigError, settings
from .globals import APP_NAME, CHERRYPY_CONFIG
from .sealing import NO_KEY_WARNING
from .server import check_settings

try:
    check_settings()
except ConfigError as exc:
    # uWSGI would print a traceback for an exception here; one line says it.
    print(f'{APP_NAME}: cannot start: {exc}', file=sys.stderr)
    raise SystemExit(1) from None
if not settings().secret_key:
    cherrypy.log(NO_KEY_WARNING, severity=logging.WARNING)
cherrypy.server.unsubscribe()
mount(CHERRYPY_CONFIG)
application = cherrypy.tree
