"""Global configuration options expressed in environment variables.

These are the names every other module refers to; the keys, their defaults
and types, and the values themselves are :mod:`pacifica.notifications.config`'s.
"""

from __future__ import annotations

import os

APP_NAME = 'pacifica-notifications'

#: Environment variable naming the service INI file.
CONFIG_ENV = 'NOTIFICATIONS_CONFIG'
#: Environment variable naming the CherryPy config file.
CPCONFIG_ENV = 'NOTIFICATIONS_CPCONFIG'
#: Environment variable naming the folder for the embedded default's files.
DATA_DIR_ENV = 'NOTIFICATIONS_DATA_DIR'

#: The service INI file named when this module was imported (the seed's name; the
#: configuration reads ``NOTIFICATIONS_CONFIG`` afresh, see ``config.config_file``).
CONFIG_FILE = os.getenv(CONFIG_ENV, '')
#: The CherryPy config file named at start-up (empty: built-in settings only).
CHERRYPY_CONFIG = os.getenv(CPCONFIG_ENV, '')
