"""The ORM module defining the SQL model for notifications.

The seed's module reference names everything here; it lives in modules of
its own (:mod:`binding`, :mod:`models`, :mod:`schema`) and is imported here
under the seed's names.  Importing touches no database: ``DB`` binds itself
to the configured database on first use.
"""

from __future__ import annotations

from argparse import Namespace

from .binding import DB, bind_database
from .masking import AUTH_SECRETS, SECRET_MASK, mask_auth
from .models import (
    MODELS,
    SCHEMA_MAJOR,
    SCHEMA_MINOR,
    BaseModel,
    EventLog,
    EventLogMatch,
    EventMatch,
    NotificationSystem,
    tables_match_models,
    utcnow,
)
from .schema import DatabaseUnavailable, OrmSync, SchemaError

__all__ = [
    'AUTH_SECRETS',
    'DB',
    'MODELS',
    'SCHEMA_MAJOR',
    'SCHEMA_MINOR',
    'SECRET_MASK',
    'BaseModel',
    'DatabaseUnavailable',
    'EventLog',
    'EventLogMatch',
    'EventMatch',
    'NotificationSystem',
    'OrmSync',
    'SchemaError',
    'bind_database',
    'eventget',
    'eventpurge',
    'mask_auth',
    'tables_match_models',
    'utcnow',
]


def eventget(args: Namespace) -> bool:
    """Print the events ``args`` names, as ``pacifica-notifications-cmd eventget`` does.

    Kept for the seed's module reference: ``args`` has ``events`` (UUIDs) and,
    when there are none, ``start``, ``end`` (datetimes) and ``limit``.
    """
    from . import eventlog  # eventlog builds on the models

    uuids = eventlog.parse_uuids(str(value) for value in getattr(args, 'events', None) or [])
    found = eventlog.select_events(
        uuids,
        None if uuids else getattr(args, 'limit', None),
        None if uuids else getattr(args, 'start', None),
        None if uuids else getattr(args, 'end', None),
    )
    for event in found:
        print(eventlog.format_event(event))
    return True


def eventpurge(args: Namespace) -> bool:
    """Purge the events ``args`` names, as ``pacifica-notifications-cmd eventpurge`` does.

    Kept for the seed's module reference: ``args`` has ``events`` (UUIDs) or
    ``older_than`` (a datetime).  Events whose work is not done are kept.
    """
    from . import eventlog  # eventlog builds on the models

    uuids = eventlog.parse_uuids(str(value) for value in getattr(args, 'events', None) or [])
    eventlog.purge_events(uuids, None if uuids else getattr(args, 'older_than', None))
    return True
