"""The health check: is the database there, is the broker there, how much work is waiting.

One cheap query per part and a broker connection that gives up within two
seconds; no user header needed, and nothing about events or secrets shown.
"""

from __future__ import annotations

import logging
from typing import Any

from peewee import DatabaseError

from . import __version__, due
from .binding import close, connect
from .models import NotificationSystem

LOG = logging.getLogger(__name__)

#: Seconds the broker check may take.
BROKER_TIMEOUT = 2.0


def broker_reachable() -> bool:
    """Whether a connection to the broker can be made now."""
    from .tasks import CELERY_APP

    try:
        with CELERY_APP.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - whatever the transport raises means the same here
        LOG.warning('status: broker unreachable: %r', exc)
        return False
    return True


def report() -> tuple[int, dict[str, Any]]:
    """The status code (200, or 503 when a part is down) and the body of ``GET /status``."""
    body: dict[str, Any] = {
        'status': 'ok',
        'version': __version__,
        'schema': None,
        'database': 'ok',
        'broker': 'ok',
        'backlog': None,
        'oldest_pending_seconds': None,
    }
    try:
        connect()
        major, minor = NotificationSystem.get_version()
        body['schema'] = f'{major}.{minor}'
        body['backlog'] = due.backlog()
        body['oldest_pending_seconds'] = due.oldest_unfinished()
    except DatabaseError as exc:
        LOG.warning('status: database unavailable: %s', exc)
        body['database'] = 'unavailable'
    finally:
        close()
    if not broker_reachable():
        body['broker'] = 'unavailable'
    healthy = body['database'] == body['broker'] == 'ok'
    if not healthy:
        body['status'] = 'unavailable'
    return (200 if healthy else 503), body
