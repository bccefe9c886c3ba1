"""The WSGI interface module for notifications.

``uwsgi --http-socket :8070 --master --module pacifica.notifications.wsgi``
serves :data:`application`.  The CherryPy file named by
``NOTIFICATIONS_CPCONFIG`` is applied when set.  Building the application
connects to nothing: each request opens its database connection.
"""

import cherrypy

from .app import mount
from .globals import CHERRYPY_CONFIG

cherrypy.server.unsubscribe()
application = mount(CHERRYPY_CONFIG)
