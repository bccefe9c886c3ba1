"""Creating the schema and upgrading it in place, one version at a time, keeping every row."""

from __future__ import annotations

import time

from peewee import (
    CharField,
    DatabaseError,
    DateTimeField,
    ForeignKeyField,
    ImproperlyConfigured,
    IntegerField,
    Model,
    MySQLDatabase,
    OperationalError,
    TextField,
    UUIDField,
)
from playhouse.migrate import SchemaMigrator, migrate

from .binding import DB
from .config import ConfigError, settings
from .models import (
    MODELS,
    SCHEMA_MAJOR,
    SCHEMA_MINOR,
    EventLog,
    EventLogMatch,
    EventMatch,
    NotificationSystem,
    new_stored_secret,
    tables_match_models,
)


class DatabaseUnavailable(OperationalError):
    """The database could not be reached within the configured attempts."""


class SchemaError(OperationalError):
    """The database schema cannot be used or upgraded by this code."""


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
    'eventmatch': [
        ('jsonpath', ' NOT NULL'),
        ('target_url', ' NOT NULL'),
        ('auth', ''),
        ('extensions', ' NOT NULL'),
        ('error', ''),
    ],
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

    versions = [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0)]

    @staticmethod
    def dbconn_blocking() -> None:
        """Wait for the database connection, ``connect_attempts`` tries ``connect_wait`` apart."""
        attempts, wait = settings().connect_attempts, settings().connect_wait
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
        migrate(
            SchemaMigrator.from_database(DB.bound()).add_column(
                EventMatch._meta.table_name, 'auth', TextField(default='{}')
            )
        )

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

    @staticmethod
    def update_5_0_to_6_0() -> None:
        """Update by indexing when each subscription last changed: workers read only what changed.

        Tables made from these models by ``create_table()`` (as the seed's
        module API does) have the index already.
        """
        table = EventMatch._meta.table_name
        if not any(index.columns == ['updated'] for index in DB.get_indexes(table)):
            migrate(SchemaMigrator.from_database(DB.bound()).add_index(table, ('updated',)))

    @staticmethod
    def update_6_0_to_7_0() -> None:
        """Update by adding each subscription's delivery mode and signing secrets.

        Every existing subscription gets a secret of its own (the column stays
        nullable: making it NOT NULL would rebuild the table on SQLite; the
        model gives every new row a secret).  Columns already
        there (an interrupted step on MySQL, whose DDL commits by itself) are
        kept.
        """
        table = EventMatch._meta.table_name
        have = {column.name for column in DB.get_columns(table)}
        if 'delivery_mode' not in have:
            # With its default in the one statement: SQLite would otherwise rebuild the
            # table, which the log's foreign keys to it forbid.
            DB.execute_sql(f"ALTER TABLE {table} ADD COLUMN delivery_mode VARCHAR(16) NOT NULL DEFAULT 'structured'")
        migrator = SchemaMigrator.from_database(DB.bound())
        adding = [
            migrator.add_column(table, name, field)
            for name, field in (
                ('signing_secret', TextField(null=True)),
                ('previous_secret', TextField(null=True)),
                ('previous_secret_until', DateTimeField(null=True)),
            )
            if name not in have
        ]
        if adding:
            migrate(*adding)
        # The keys as stored, whatever their spelling (rows of old versions may differ from peewee's).
        mark = DB.param
        unsigned = DB.execute_sql(f'SELECT uuid FROM {table} WHERE signing_secret IS NULL').fetchall()
        for (key,) in unsigned:
            DB.execute_sql(
                f'UPDATE {table} SET signing_secret = {mark} WHERE uuid = {mark}', (new_stored_secret(), key)
            )

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
                f'(which knows up to {SCHEMA_MAJOR}.{SCHEMA_MINOR})'
            )
        start = cls.versions.index(current)
        for old, new in zip(cls.versions[start:], cls.versions[start + 1 :]):
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
