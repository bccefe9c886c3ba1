"""The SQL model for notifications: subscriptions, the event log, the schema version.

Importing this module touches no database: models use :data:`binding.DB`,
which binds itself to the configured database on first use.  The rules about
a row (is a subscription live, is a log row's work finished) are written
here once, in Python and, where queries need them, as SQL expressions.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from uuid import UUID

from peewee import (
    Case,
    CharField,
    DateTimeField,
    Expression,
    ForeignKeyField,
    IntegerField,
    Model,
    ModelSelect,
    TextField,
    UUIDField,
)

from . import jsonpath, sealing, signing
from .binding import DB, close, connect
from .config import settings
from .masking import mask_auth

#: The schema version this code reads and writes.
SCHEMA_MAJOR = 7
SCHEMA_MINOR = 0

#: How a subscription wants its events: the JSON event as the body, or CloudEvents binary mode.
DELIVERY_MODES = ('structured', 'binary')

#: What can become of a delivery: still to do, taken by the target, refused by the policy server, given up.
DELIVERY_STATES = ('pending', 'delivered', 'denied', 'failed')

#: What ``policy_status_code`` says when no policy server is configured.
POLICY_SKIPPED = 'skipped'
#: What ``target_status_code`` says while an attempt is being sent.
SENDING = 'sending'
#: What it says of an attempt whose process stopped while sending (its outcome unknown; see :mod:`due`).
INTERRUPTED = 'interrupted'


def utcnow() -> datetime:
    """Return the current UTC time as a naive datetime (what every column stores)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_stored_secret() -> str:
    """A fresh signing secret, as stored (sealed when ``secret_key`` is set)."""
    return sealing.seal(signing.new_secret())


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class BaseModel(Model):
    """Common base: the shared database binding and connection handling."""

    class Meta:
        database = DB

    @classmethod
    def database_connect(cls) -> None:
        """Make sure the database is bound and this thread holds a connection.

        Connecting a second time is harmless: an open connection is reused.
        """
        connect()

    @classmethod
    def database_close(cls) -> None:
        """Close (or return to the pool) this thread's connection.

        Closing an already closed connection is not a problem.
        """
        close()

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
    updated = DateTimeField(default=utcnow, index=True)  # workers read the subscriptions changed since
    deleted = DateTimeField(null=True)
    delivery_mode = CharField(max_length=16, default=DELIVERY_MODES[0])
    signing_secret = TextField(default=new_stored_secret)  # as stored: see sealing
    previous_secret = TextField(null=True)  # the secret before the last rotation, as stored
    previous_secret_until = DateTimeField(null=True)  # when it stops signing

    @classmethod
    def live(cls) -> Expression:
        """SQL for :meth:`is_live`."""
        return cls.deleted.is_null() & cls.disabled.is_null()

    def is_live(self) -> bool:
        """Whether the subscription still receives events (neither deleted nor disabled)."""
        return self.deleted is None and self.disabled is None

    def auth_dict(self) -> dict:
        """Return the stored auth settings, secrets included (for delivery only)."""
        return json.loads(self.auth or '{}')

    def extensions_dict(self) -> dict:
        """Return the extensions merged into every event this subscription receives."""
        return json.loads(self.extensions or '{}')

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign a delivery now: the current one, and the one before it during its grace.

        Raises :class:`sealing.SealError` when the configured keys cannot open them.
        """
        keys = [sealing.unseal(self.signing_secret)]
        if self.previous_secret and self.previous_secret_until and (now or utcnow()) < self.previous_secret_until:
            keys.append(sealing.unseal(self.previous_secret))
        return keys

    def to_hash(self) -> dict:
        """Convert the object to a json serializable hash, secrets masked and signing secrets left out."""
        return {
            'uuid': str(self.uuid),
            'user': self.user,
            'name': self.name,
            'jsonpath': self.jsonpath,
            'target_url': self.target_url,
            'auth': mask_auth(self.auth_dict()),
            'extensions': self.extensions_dict(),
            'delivery_mode': self.delivery_mode,
            'version': self.version,
            'created': _iso(self.created),
            'updated': _iso(self.updated),
            'disabled': _iso(self.disabled),
            'deleted': _iso(self.deleted),
            'error': self.error,
        }

    def validate_jsonpath(self) -> None:
        """Validate the jsonpath string (kept for the seed's module reference; raises :class:`JsonPathError`)."""
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

    # The backref of EventLogMatch.event_log; declared for type checkers.
    event_matches: ModelSelect[EventLogMatch]


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

    # Made by peewee for the foreign keys; declared for type checkers.
    event_log_id: UUID
    event_match_id: UUID

    def is_delivered(self) -> bool:
        """Whether the target has taken this event (so it must not be sent again)."""
        return (self.target_status_code or '').startswith('2')

    def policy_answered(self) -> bool:
        """Whether delivery may go ahead: the policy server allowed it, or none is configured."""
        code = self.policy_status_code or ''
        return code.startswith('2') or (code == POLICY_SKIPPED and not settings().policy_url)

    def is_finished(self) -> bool:
        """Whether this row's work is over (see :mod:`due`): delivered, denied or given up."""
        return self.retry_at is None

    def state(self) -> str:
        """What became of this delivery, as its subscriber sees it (one of :data:`DELIVERY_STATES`)."""
        if self.is_delivered():
            return 'delivered'
        if (self.policy_status_code or '').startswith('4'):
            return 'denied'
        return 'pending' if self.retry_at is not None else 'failed'

    @classmethod
    def state_sql(cls) -> Case:
        """SQL for :meth:`state`, to filter on."""
        return Case(
            None,
            [
                (cls.target_status_code.startswith('2'), 'delivered'),
                (cls.policy_status_code.startswith('4'), 'denied'),
                (cls.retry_at.is_null(False), 'pending'),
            ],
            'failed',
        )

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
