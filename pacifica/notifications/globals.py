"""Global configuration options expressed in environment variables.

These are the names and built-in defaults every other module refers to; the
values themselves are read by :mod:`pacifica.notifications.config`.
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

#: The service INI file named at start-up (empty: built-in defaults only).
CONFIG_FILE = os.getenv(CONFIG_ENV, '')
#: The CherryPy config file named at start-up (empty: built-in settings only).
CHERRYPY_CONFIG = os.getenv(CPCONFIG_ENV, '')

#: Every configuration key: (section, key) -> (environment variable, default).
#: A default of ``None`` means "not set"; callers decide what that implies.
SETTINGS: dict[tuple[str, str], tuple[str, str | None]] = {
    ('DEFAULT', 'default_user'): ('DEFAULT_USER', 'anonymous'),
    ('notifications', 'policy_url'): ('POLICY_URL', None),
    ('notifications', 'user_header'): ('USER_HEADER', 'Http-Remote-User'),
    ('notifications', 'max_request_bytes'): ('MAX_REQUEST_BYTES', str(1024 * 1024)),
    ('notifications', 'retry_schedule'): ('RETRY_SCHEDULE', '5,30,120,600,1800,3600'),
    ('notifications', 'connect_timeout'): ('CONNECT_TIMEOUT', '5'),
    ('notifications', 'read_timeout'): ('READ_TIMEOUT', '30'),
    ('notifications', 'max_logged_body'): ('MAX_LOGGED_BODY', '4096'),
    ('notifications', 'recover_after'): ('RECOVER_AFTER', '300'),
    ('notifications', 'sweep_interval'): ('SWEEP_INTERVAL', '30'),
    ('celery', 'broker_url'): ('BROKER_URL', None),
    ('celery', 'backend_url'): ('BACKEND_URL', None),
    ('celery', 'queue'): ('CELERY_QUEUE', 'pacifica-notifications'),
    ('database', 'peewee_url'): ('PEEWEE_URL', None),
    ('database', 'connect_attempts'): ('DATABASE_CONNECT_ATTEMPTS', '10'),
    ('database', 'connect_wait'): ('DATABASE_CONNECT_WAIT', '20'),
}
