"""The schema: creation, versions, and in-place upgrades from every earlier version."""

from __future__ import annotations

import subprocess
import sys

import pytest
from peewee import IntegrityError

from pacifica.notifications import orm, signing
from pacifica.notifications.orm import (
    EventLog,
    EventLogMatch,
    EventMatch,
    NotificationSystem,
    OrmSync,
    SchemaError,
)

from . import schema_history

pytestmark = pytest.mark.fast


def test_import_connects_nowhere(service_env):
    env = {**service_env, 'PEEWEE_URL': 'postgres://127.0.0.1:1/none'}
    code = (
        'import pacifica.notifications.orm as orm, pacifica.notifications.eventlog, '
        'pacifica.notifications.__main__; assert orm.DB.obj is None; print("ok")'
    )
    done = subprocess.run(
        [sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == 'ok', done.stderr


def test_fresh_database_syncs_to_current(database):
    assert NotificationSystem.get_version() == (0, 0)
    assert not NotificationSystem.is_safe()
    assert OrmSync.update_tables() == (orm.SCHEMA_MAJOR, orm.SCHEMA_MINOR)
    assert NotificationSystem.is_equal() and NotificationSystem.is_safe()
    assert OrmSync.update_tables() == (orm.SCHEMA_MAJOR, orm.SCHEMA_MINOR)


def test_minor_difference_is_safe_but_not_equal(synced):
    NotificationSystem.set_version((orm.SCHEMA_MAJOR, orm.SCHEMA_MINOR + 1))
    assert NotificationSystem.is_safe()
    assert not NotificationSystem.is_equal()


def test_newer_schema_is_refused(synced):
    NotificationSystem.set_version((orm.SCHEMA_MAJOR + 1, 0))
    assert not NotificationSystem.is_safe()
    with pytest.raises(SchemaError, match='unknown to this code'):
        OrmSync.update_tables()


@pytest.mark.parametrize('version', OrmSync.versions)
def test_upgrade_keeps_rows(database, version):
    database.connect(reuse_if_open=True)
    schema_history.build(database, version)
    assert NotificationSystem.get_version() == version
    OrmSync.update_tables()
    assert NotificationSystem.is_equal()

    rows = {str(m.uuid): m for m in EventMatch.select()}
    assert set(rows) == {s[0] for s in schema_history.SUBSCRIPTIONS}
    first = rows['466725b0-cbe1-45cd-b034-c3209aa4b6e0']
    assert (first.name, first.jsonpath, first.user, first.auth) == ('My Event Match', 'data', 'dmlb2001', '{}')
    other = rows['0a2c9f3e-5f43-4b5e-9a55-2c1e7b0d9c11']
    assert (other.extensions, other.error, str(other.disabled)) == ('{"k": "v"}', 'gone', '2019-01-01 00:00:00')
    if version >= (3, 0):
        assert [str(e.uuid) for e in EventLog.select()] == [schema_history.EVENTS[0][0]]
        match = EventLogMatch.get()
        assert (match.policy_status_code, match.target_resp_body) == ('200', 'ok')
        assert (match.attempts, match.last_attempt) == (0, None)
        with pytest.raises(IntegrityError), orm.BaseModel.atomic():
            EventLogMatch.create(event_log=match.event_log_id, event_match=match.event_match_id)
    else:
        assert EventLog.select().count() == 0
    secrets = [rows[sub[0]].signing_secret for sub in schema_history.SUBSCRIPTIONS]
    if version >= (7, 0):
        assert secrets == schema_history.SECRETS_7
    assert len(set(secrets)) == len(secrets) and all(signing.check_secret(secret) for secret in secrets)
    assert {sub.delivery_mode for sub in rows.values()} == {'structured'}
    new = EventMatch.create(name='n', jsonpath='$', user='u', target_url='http://h/')
    stored = EventMatch.get_by_id(new.uuid)
    assert stored.auth == '{}'
    assert signing.check_secret(stored.signing_secret) and stored.signing_secret not in secrets


def test_dbconn_blocking_gives_up(service_env, tmp_path, monkeypatch):
    monkeypatch.setenv('DATABASE_CONNECT_ATTEMPTS', '2')
    orm.bind_database(f'sqlite:///{tmp_path / "missing" / "x.sqlite3"}')
    with pytest.raises(orm.DatabaseUnavailable, match='after 2 attempt'):
        OrmSync.dbconn_blocking()


def test_upgrade_of_tables_made_from_the_models(synced):
    """The seed's module API makes tables with ``create_table()``: the 6.0 and 7.0 steps keep what is there."""
    sub = EventMatch.create(name='n', jsonpath='$', user='u', target_url='http://h/')
    NotificationSystem.set_version((5, 0))
    assert OrmSync.update_tables() == (7, 0)
    assert NotificationSystem.get_version() == (7, 0)
    assert EventMatch.get_by_id(sub.uuid).signing_secret == sub.signing_secret
