"""The ORM module defining the SQL model for notifications.

Importing this module touches no database: models are bound to
:data:`DB`, a proxy that binds itself to the configured database the first
time anything uses it (see :mod:`binding`).
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

from peewee import (
    CharField, DatabaseError, DateTimeField, ForeignKeyField, ImproperlyConfigured, IntegerField,
    Model, MySQLDatabase, OperationalError, TextField, UUIDField,
)
from playhouse.migrate import SchemaMigrator, migrate
from playhouse.pool import PooledPostgresqlDatabase

from . import jsonpath
from .binding import DB, bind_database
from .config import ConfigError, get_number

__all__ = ['DB', 'bind_database', 'BaseModel', 'EventMatch', 'EventLog', 'EventLogMatch',
           'NotificationSystem', 'OrmSync', 'eventget', 'eventpurge']

#: The schema version this code reads and writes.
SCHEMA_MAJOR = 5
SCHEMA_MINOR = 0


class DatabaseUnavailable(OperationalError):
    """The database could not be reached within the configured attempts."""


class SchemaError(OperationalError):
    """The database schema cannot be used or upgraded by this code."""


def utcnow() -> datetime:
    """Return the current UTC time as a naive datetime (what every column stores)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


#: What a response shows instead of a stored password or credential.
SECRET_MASK = '********'

#: Per auth type: the settings key and the field in it that is secret.
AUTH_SECRETS = {'basic': ('basic', 'password'), 'header': ('header', 'credentials')}


def mask_auth(auth: dict) -> dict:
    """Return ``auth`` with its secret replaced by :data:`SECRET_MASK`."""
    if auth.get('type') not in AUTH_SECRETS:
        return dict(auth)
    key, secret = AUTH_SECRETS[auth['type']]
    return {**auth, key: {**auth[key], secret: SECRET_MASK}}


def _check_pooled() -> None:
    """Replace a pooled connection the server dropped (a restart) with a fresh one.

    A connection that sat in the pool across a database restart fails on
    first use; one ``SELECT 1`` finds it, so a request or task never does.
    (peewee's MySQL pool pings on checkout itself.)
    """
    try:
        DB.execute_sql('SELECT 1')
    except DatabaseError:
        DB.manual_close()
        DB.connect()


class BaseModel(Model):
    """Common base: the shared database binding and connection handling."""

    class Meta:
        database = DB

    @classmethod
    def database_connect(cls) -> None:
        """Make sure the database is bound and this thread holds a connection.

        Connecting a second time is harmless: an open connection is reused.
        """
        if DB.connect(reuse_if_open=True) and isinstance(DB.obj, PooledPostgresqlDatabase):
            _check_pooled()

    @classmethod
    def database_close(cls) -> None:
        """Close (or return to the pool) this thread's connection.

        Closing an already closed connection is not a problem.
        """
        if DB.obj is not None and not DB.is_closed():
            DB.close()

    @classmethod
    def atomic(cls):
        """Return a transaction context for the bound database."""
        return DB.atomic()


class EventMatch(BaseModel):
    """A user's subscription: events matching ``jsonpath`` go to ``target_url``."""

    uuid = UUIDField(primary_key=True, default=uuid.uuid4)
    name = CharField()
    jsonpath = TextField()
    user = CharField(index=True)
    target_url = TextField()
    auth = TextField(default='{}')
    extensions = TextField(default='{}')
    version = CharField(default='v0.1')
    error = TextField(null=True)
    disabled = DateTimeField(null=True)
    created = DateTimeField(default=utcnow)
    updated = DateTimeField(default=utcnow)
    deleted = DateTimeField(null=True)

    def is_live(self) -> bool:
        """Whether the subscription still receives events (neither deleted nor disabled)."""
        return self.deleted is None and self.disabled is None

    def auth_dict(self) -> dict:
        """Return the stored auth settings, secrets included (for delivery only)."""
        return json.loads(self.auth or '{}')

    def extensions_dict(self) -> dict:
        """Return the extensions merged into every event this subscription receives."""
        return json.loads(self.extensions or '{}')

    def to_hash(self) -> dict:
        """Convert the object to a json serializable hash, secrets masked."""
        return {
            'uuid': str(self.uuid),
            'user': self.user,
            'name': self.name,
            'jsonpath': self.jsonpath,
            'target_url': self.target_url,
            'auth': mask_auth(self.auth_dict()),
            'extensions': self.extensions_dict(),
            'version': self.version,
            'created': _iso(self.created),
            'updated': _iso(self.updated),
            'disabled': _iso(self.disabled),
            'deleted': _iso(self.deleted),
            'error': self.error,
        }

    def validate_jsonpath(self) -> None:
        """Validate the jsonpath string (raises :class:`JsonPathError`)."""
        jsonpath.parse(self.jsonpath)


class EventLog(BaseModel):
    """An event as received, kept until purged.

    ``dedup_key`` (a digest of the CloudEvent's source and id) makes a
    re-posted event find the first copy; ``retry_at`` is set while the event
    still waits to be matched, and says when the recovery sweep may dispatch
    it again if its queued task never ran.
    """

    uuid = UUIDField(primary_key=True, default=uuid.uuid4)
    jsondata = TextField()
    created = DateTimeField(default=utcnow, index=True)
    dedup_key = CharField(max_length=64, null=True, unique=True)
    retry_at = DateTimeField(null=True, index=True)


class EventLogMatch(BaseModel):
    """What happened to one event for one matching subscription."""

    uuid = UUIDField(primary_key=True, default=uuid.uuid4)
    event_log = ForeignKeyField(EventLog, backref='event_matches')
    event_match = ForeignKeyField(EventMatch, backref='event_logs')
    policy_status_code = TextField(null=True)
    policy_resp_body = TextField(null=True)
    target_status_code = TextField(null=True)
    target_resp_body = TextField(null=True)
    created = DateTimeField(default=utcnow)
    attempts = IntegerField(default=0)
    last_attempt = DateTimeField(null=True)
    retry_at = DateTimeField(null=True, index=True)

    def is_delivered(self) -> bool:
        """Whether the target has taken this event (so it must not be sent again)."""
        return (self.target_status_code or '').startswith('2')

    class Meta:
        indexes = ((('event_log', 'event_match'), True),)


class NotificationSystem(BaseModel):
    """Notification schema version: one row per part ('major', 'minor')."""

    part = CharField(primary_key=True, max_length=16)
    value = IntegerField()

    @classmethod
    def get_version(cls) -> tuple[int, int]:
        """Get the current schema version as a tuple ((0, 0) before versioning began)."""
        if not cls.table_exists():
            return (0, 0)
        parts = {row.part: row.value for row in cls.select()}
        return (parts.get('major', 0), parts.get('minor', 0))

    @classmethod
    def set_version(cls, version: tuple[int, int]) -> None:
        """Record ``version`` as the database's schema version."""
        existing = {row.part for row in cls.select(cls.part)}
        for part, value in zip(('major', 'minor'), version):
            if part in existing:
                cls.update(value=value).where(cls.part == part).execute()
            else:
                cls.create(part=part, value=value)

    @classmethod
    def get_or_create_version(cls) -> tuple[int, int]:
        """Record the code's schema version and return it; (0, 0) where the version table does not exist."""
        if not cls.table_exists():
            return (0, 0)
        cls.set_version((SCHEMA_MAJOR, SCHEMA_MINOR))
        return (SCHEMA_MAJOR, SCHEMA_MINOR)

    @classmethod
    def is_equal(cls) -> bool:
        """Check that the schema version matches the code version exactly."""
        return cls.get_version() == (SCHEMA_MAJOR, SCHEMA_MINOR)

    @classmethod
    def is_safe(cls) -> bool:
        """Check that the schema's major version is the one the code needs.

        Tables made by the models' own ``create_table()``, with no version
        recorded, are the current schema too.
        """
        return cls.get_version()[0] == SCHEMA_MAJOR or tables_match_models()


#: Every table of the current schema, in creation order.
MODELS = (EventMatch, NotificationSystem, EventLog, EventLogMatch)


def tables_match_models() -> bool:
    """Whether the tables were made from these models with no version recorded.

    That is how the seed's module API makes a schema (each model's
    ``create_table()``); every data table then has every column its model has.
    """
    if NotificationSystem.table_exists():
        return False
    for model in (EventMatch, EventLog, EventLogMatch):
        if not model.table_exists():
            return False
        columns = {column.name for column in DB.get_columns(model._meta.table_name)}
        if not {field.column_name for field in model._meta.sorted_fields} <= columns:
            return False
    return True


def _step(database):
    """Return a transaction for one schema step; MySQL commits DDL by itself."""
    if isinstance(database, MySQLDatabase):
        return _NoTransaction()
    return database.atomic()


class _NoTransaction:
    """A do-nothing context for databases whose DDL cannot be rolled back."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


#: Columns that MySQL's 64 KiB TEXT cannot always hold, widened by the 5.0 step.
MYSQL_LONG_TEXT = {
    'eventlog': [('jsondata', ' NOT NULL')],
    'eventmatch': [('jsonpath', ' NOT NULL'), ('target_url', ' NOT NULL'), ('auth', ''),
                   ('extensions', ' NOT NULL'), ('error', '')],
    'eventlogmatch': [('policy_resp_body', ''), ('target_resp_body', '')],
}


class OrmSync:
    """Special module for syncing the orm.

    ``versions`` lists every schema version in order; the step from one to
    the next is the method ``update_<from>_to_<to>`` named by their tuples.
    Each step runs in its own transaction (except on MySQL/MariaDB, where DDL
    commits implicitly) and records the version it reached, so an interrupted
    upgrade resumes where it stopped.
    """

    versions = [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]

    @staticmethod
    def dbconn_blocking() -> None:
        """Wait for the database connection, ``connect_attempts`` tries ``connect_wait`` apart."""
        attempts = max(1, int(get_number('database', 'connect_attempts')))
        wait = float(get_number('database', 'connect_wait', float))
        for attempt in range(1, attempts + 1):
            try:
                EventMatch.database_connect()
                return
            except ImproperlyConfigured as exc:
                raise ConfigError(f'database driver missing: {exc}') from None
            except DatabaseError as exc:
                if attempt == attempts:
                    raise DatabaseUnavailable(
                        f'database unavailable after {attempts} attempt(s): {str(exc).strip()}'
                    ) from None
                time.sleep(wait)

    @staticmethod
    def update_0_0_to_1_0() -> None:
        """Update by adding the new table that records the schema version."""
        NotificationSystem.create_table()

    @staticmethod
    def update_1_0_to_2_0() -> None:
        """Update by adding the auth column to subscriptions."""
        migrate(SchemaMigrator.from_database(DB.bound()).add_column(
            EventMatch._meta.table_name, 'auth', TextField(default='{}')))

    @staticmethod
    def update_2_0_to_3_0() -> None:
        """Update by adding the event log tables, as they were at 3.0."""
        DB.create_tables(_log_tables_3_0())

    @staticmethod
    def update_3_0_to_4_0() -> None:
        """Update by counting delivery attempts, and one log row per event and subscription."""
        table = EventLogMatch._meta.table_name
        migrator = SchemaMigrator.from_database(DB.bound())
        migrate(
            migrator.add_column(table, 'attempts', IntegerField(default=0)),
            migrator.add_column(table, 'last_attempt', DateTimeField(null=True)),
            migrator.add_index(table, ('event_log_id', 'event_match_id'), unique=True),
        )

    @staticmethod
    def update_4_0_to_5_0() -> None:
        """Update by adding duplicate detection and the recovery sweep's due times.

        Rows logged before 5.0 get no due time: only work started by this
        version is tracked for recovery.
        """
        events, matches = EventLog._meta.table_name, EventLogMatch._meta.table_name
        migrator = SchemaMigrator.from_database(DB.bound())
        migrate(
            migrator.add_column(events, 'dedup_key', CharField(max_length=64, null=True)),
            migrator.add_column(events, 'retry_at', DateTimeField(null=True)),
            migrator.add_index(events, ('dedup_key',), unique=True),
            migrator.add_index(events, ('retry_at',)),
            migrator.add_column(matches, 'retry_at', DateTimeField(null=True)),
            migrator.add_index(matches, ('retry_at',)),
        )
        if isinstance(DB.bound(), MySQLDatabase):
            for table, columns in MYSQL_LONG_TEXT.items():
                changes = ', '.join(f'MODIFY {column} LONGTEXT{extra}' for column, extra in columns)
                DB.execute_sql(f'ALTER TABLE {table} {changes}')

    @classmethod
    def update_tables(cls) -> tuple[int, int]:
        """Create or upgrade the schema to the current version and return it."""
        database = DB.bound()
        if not EventMatch.table_exists() or tables_match_models():
            with _step(database):
                DB.create_tables(MODELS)
                NotificationSystem.get_or_create_version()
            return (SCHEMA_MAJOR, SCHEMA_MINOR)
        current = NotificationSystem.get_version()
        if current not in cls.versions:
            raise SchemaError(
                f'database schema {current[0]}.{current[1]} is unknown to this code '
                f'(which knows up to {SCHEMA_MAJOR}.{SCHEMA_MINOR})')
        start = cls.versions.index(current)
        for old, new in zip(cls.versions[start:], cls.versions[start + 1:]):
            step = getattr(cls, f'update_{old[0]}_{old[1]}_to_{new[0]}_{new[1]}')
            with _step(database):
                step()
                NotificationSystem.set_version(new)
        return cls.versions[-1]


def _log_tables_3_0() -> list[type[Model]]:
    """Return the event log tables exactly as schema 3.0 defined them."""

    class EventLog30(Model):
        uuid = UUIDField(primary_key=True)
        jsondata = TextField()
        created = DateTimeField(index=True)

        class Meta:
            database = DB
            table_name = EventLog._meta.table_name

    class EventLogMatch30(Model):
        uuid = UUIDField(primary_key=True)
        event_log = ForeignKeyField(EventLog30)
        event_match = ForeignKeyField(EventMatch)
        policy_status_code = TextField(null=True)
        policy_resp_body = TextField(null=True)
        target_status_code = TextField(null=True)
        target_resp_body = TextField(null=True)
        created = DateTimeField()

        class Meta:
            database = DB
            table_name = EventLogMatch._meta.table_name

    return [EventLog30, EventLogMatch30]


def eventget(args) -> bool:
    """Print the events ``args`` names, as ``pacifica-notifications-cmd eventget`` does.

    Kept for the seed's module reference: ``args`` has ``events`` (UUIDs) and,
    when there are none, ``start``, ``end`` (datetimes) and ``limit``.
    """
    from . import eventlog  # eventlog builds on these models
    uuids = eventlog.parse_uuids(str(value) for value in getattr(args, 'events', None) or [])
    found = eventlog.select_events(uuids, None if uuids else getattr(args, 'limit', None),
                                   None if uuids else getattr(args, 'start', None),
                                   None if uuids else getattr(args, 'end', None))
    for event in found:
        print(eventlog.format_event(event))
    return True


def eventpurge(args) -> bool:
    """Purge the events ``args`` names, as ``pacifica-notifications-cmd eventpurge`` does.

    Kept for the seed's module reference: ``args`` has ``events`` (UUIDs) or
    ``older_than`` (a datetime).  Events whose work is not done are kept.
    """
    from . import eventlog  # eventlog builds on these models
    uuids = eventlog.parse_uuids(str(value) for value in getattr(args, 'events', None) or [])
    eventlog.purge_events(uuids, None if uuids else getattr(args, 'older_than', None))
    return True
