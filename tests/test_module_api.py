"""The module API of the seed's module reference, as code written against it (0.5.2's tests) uses it."""

from __future__ import annotations

from argparse import Namespace
from datetime import datetime, timedelta

import pytest
from peewee import OperationalError

from pacifica.notifications import orm
from pacifica.notifications.__main__ import _eventretry, cmd, main
from pacifica.notifications.orm import (
    EventLog,
    EventLogMatch,
    EventMatch,
    NotificationSystem,
    OrmSync,
    utcnow,
)

pytestmark = pytest.mark.fast

MODELS = (EventMatch, EventLog, EventLogMatch)


def test_cmd_takes_separate_arguments_and_returns_the_status(synced, service_env):
    assert cmd('dbchk') == 0
    assert cmd('dbchk', '--equal') == 0
    assert cmd('eventget', '--start-date', '2020-01-01 00:00:00', '--end-date', '2020-02-01 00:00:00') == 0


def test_cmd_raises_value_error_for_bad_input(synced, service_env):
    with pytest.raises(ValueError, match='after end date'):
        cmd('eventget', '--start-date', '2020-03-01 00:00:00', '--end-date', '2020-02-01 00:00:00')


def test_main_raises_operational_error_while_the_schema_is_old(database, service_env):
    with pytest.raises(OperationalError, match='dbsync'):
        main('--stop-after-a-moment')


def test_dbconn_blocking_raises_operational_error(service_env, tmp_path, monkeypatch):
    monkeypatch.setenv('DATABASE_CONNECT_ATTEMPTS', '1')
    orm.bind_database(f'sqlite:///{tmp_path / "missing" / "x.sqlite3"}')
    with pytest.raises(OperationalError):
        OrmSync.dbconn_blocking()


def test_version_is_zero_where_the_version_table_does_not_exist(synced):
    NotificationSystem.drop_table()
    assert NotificationSystem.get_or_create_version() == (0, 0)
    assert NotificationSystem.get_version() == (0, 0)


def test_tables_made_by_create_table_are_usable_and_sync_records_their_version(database, service_env):
    for model in MODELS:
        model.create_table()
    assert NotificationSystem.is_safe() and not NotificationSystem.is_equal()
    assert cmd('dbchk') == 0 and cmd('dbchk', '--equal') == -1
    assert cmd('dbsync') == 0
    assert NotificationSystem.is_equal()


def test_tables_missing_a_column_are_not_usable(database):
    for model in MODELS:
        model.create_table()
    database.execute_sql('ALTER TABLE eventlogmatch DROP COLUMN target_resp_body')
    assert not NotificationSystem.is_safe()


def _events():
    sub = EventMatch.create(name='s', jsonpath='$', user='u', target_url='http://127.0.0.1:9/')
    old = EventLog.create(jsondata='{"data": 1}', created=datetime(2019, 1, 1))
    new = EventLog.create(jsondata='{"data": 2}', created=utcnow())
    EventLogMatch.create(event_log=old, event_match=sub, policy_status_code='200', target_status_code='200')
    return old, new


def test_eventget_and_eventpurge_take_the_seeds_arguments(synced, capsys):
    old, new = _events()
    assert orm.eventget(Namespace(events=[str(old.uuid)], limit=10, start=None, end=None)) is True
    assert capsys.readouterr().out.startswith(f'Event - {old.uuid}\n{{"data": 1}}\n    ELM ')
    assert orm.eventget(Namespace(events=[], limit=10, start=utcnow() - timedelta(days=1), end=utcnow()))
    assert capsys.readouterr().out.splitlines()[0] == f'Event - {new.uuid}'
    assert orm.eventpurge(Namespace(events=[], older_than=datetime(2020, 1, 1))) is True
    assert [event.uuid for event in EventLog.select()] == [new.uuid]


def test_eventretry_takes_a_namespace_of_events(synced, service_env, capsys):
    _old, new = _events()
    assert _eventretry(Namespace(events=[new.uuid])) == 0
    assert capsys.readouterr().out == f'Event - {new.uuid} requeued\n'
    assert EventLog.get_by_id(new.uuid).retry_at is not None


def test_what_is_kept_only_for_the_seeds_module_reference_still_works(synced):
    from pacifica.notifications import rest, tasks
    from pacifica.notifications.delivery import Reply
    from pacifica.notifications.jsonpath import JsonPathError

    assert rest.encode_text({'é': 1}) == '{"é": 1}'.encode()
    sub = EventMatch.create(name='s', jsonpath='$.data', user='u', target_url='http://127.0.0.1:9/')
    sub.validate_jsonpath()
    with pytest.raises(JsonPathError):
        EventMatch(jsonpath='$[').validate_jsonpath()
    event = EventLog.create(jsondata='{"data": 1}')
    row = tasks.create_log_match(sub, event.uuid, Reply(200, 'ok'))
    assert (row.policy_status_code, row.retry_at) == ('200', None)
    assert tasks.create_log_match(sub, event.uuid).uuid == row.uuid
    tasks.update_log_match(row.uuid, Reply(404, 'gone'))
    tasks.disable_eventmatch(sub.uuid, 'target answered 404')
    assert EventLogMatch.get_by_id(row.uuid).target_status_code == '404'
    assert EventMatch.get_by_id(sub.uuid).error == 'target answered 404'
    headers: dict = {}
    assert (
        tasks.event_auth_to_requests({'type': 'header', 'header': {'type': 'Bearer', 'credentials': 't'}}, headers)
        is None
    )
    assert headers == {'Authorization': 'Bearer t'}
