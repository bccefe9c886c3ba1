"""``pacifica-notifications-cmd``: schema commands and the event log, as an admin runs them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest

from pacifica.notifications.orm import EventLog, EventLogMatch, EventMatch, utcnow

from . import schema_history
from .conftest import run_cmd

UNSET = 255  # dbchk's "-1"


def test_schema_lifecycle(database, service_env):
    assert run_cmd(service_env, 'dbchk').returncode == UNSET
    assert run_cmd(service_env, 'dbchk', '--equal').returncode == UNSET
    sync = run_cmd(service_env, 'dbsync')
    assert sync.returncode == 0, sync.stderr
    assert run_cmd(service_env, 'dbsync').returncode == 0
    assert run_cmd(service_env, 'dbchk').returncode == 0
    assert run_cmd(service_env, 'dbchk', '--equal').returncode == 0


@pytest.mark.parametrize('version', [(0, 0), (2, 0)])
def test_old_schema_upgraded_by_dbsync(database, service_env, version):
    database.connect(reuse_if_open=True)
    schema_history.build(database, version)
    database.close()
    chk = run_cmd(service_env, 'dbchk')
    assert chk.returncode == UNSET
    assert 'run pacifica-notifications-cmd dbsync' in chk.stderr
    assert run_cmd(service_env, 'dbsync').returncode == 0
    assert run_cmd(service_env, 'dbchk', '--equal').returncode == 0
    database.connect(reuse_if_open=True)
    assert EventMatch.select().count() == len(schema_history.SUBSCRIPTIONS)


def test_config_file_selects_database(database, service_env, tmp_path, db_url):
    ini = tmp_path / 'service.cfg'
    ini.write_text(f'[database]\npeewee_url = {db_url}\nconnect_attempts = 1\nconnect_wait = 0\n')
    env = {k: v for k, v in service_env.items() if k != 'PEEWEE_URL'}
    assert run_cmd(env, '-c', str(ini), 'dbsync').returncode == 0
    assert run_cmd(env, 'dbchk', '--config', str(ini)).returncode == 0


def test_unreachable_database_is_one_clear_line(service_env, tmp_path):
    env = {**service_env, 'PEEWEE_URL': f'sqlite:///{tmp_path / "no" / "such" / "dir.db"}'}
    for args in (['dbchk'], ['dbsync'], ['eventget'], ['eventpurge', '--older-than-date', '2020-01-01 00:00:00']):
        done = run_cmd(env, *args)
        assert done.returncode == 1
        assert done.stderr.count('\n') == 1 and 'database unavailable' in done.stderr
        assert 'Traceback' not in done.stderr


def test_commands_before_dbsync_say_so(database, service_env):
    done = run_cmd(service_env, 'eventget')
    assert done.returncode == 1
    assert 'run pacifica-notifications-cmd dbsync' in done.stderr


def seed(count: int, start: datetime, matches_each: int = 1) -> list[EventLog]:
    """Log ``count`` events a minute apart, each matched by ``matches_each`` subscriptions."""
    subs = [
        EventMatch.create(name=f's{index}', jsonpath='$.data', user='dmlb2001', target_url='http://127.0.0.1:9/r')
        for index in range(matches_each)
    ]
    events = []
    for index in range(count):
        event = EventLog.create(
            jsondata=json.dumps({'eventID': f'e{index}', 'data': [index]}), created=start + timedelta(minutes=index)
        )
        for sub in subs:
            EventLogMatch.create(
                event_log=event,
                event_match=sub,
                policy_status_code='200',
                target_status_code='200',
                created=event.created,
            )
        events.append(event)
    return events


def test_eventget_prints_seed_format(synced, service_env):
    events = seed(2, datetime(2020, 2, 29, 20, 44, 17, 923416))
    sub = EventMatch.get()
    done = run_cmd(service_env, 'eventget')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f'Event - {events[0].uuid}',
        '{"eventID": "e0", "data": [0]}',
        f'    ELM {sub.uuid} (2020-02-29T20:44:17.923416) policy 200 target 200',
        f'Event - {events[1].uuid}',
        '{"eventID": "e1", "data": [1]}',
        f'    ELM {sub.uuid} (2020-02-29T20:45:17.923416) policy 200 target 200',
    ]


def test_eventget_filters(synced, service_env):
    events = seed(5, datetime(2020, 1, 1))

    def shown(*args):
        done = run_cmd(service_env, 'eventget', *args)
        assert done.returncode == 0, done.stderr
        return [line.split(' - ')[1] for line in done.stdout.splitlines() if line.startswith('Event - ')]

    ids = [str(e.uuid) for e in events]
    assert shown() == ids
    assert shown(ids[3], ids[1]) == [ids[1], ids[3]]
    assert shown('--limit', '2') == ids[:2]
    assert shown('--start-date', '2020-01-01 00:01:00', '--end-date', '2020-01-01 00:03:00') == ids[1:4]
    assert shown('--start-date', '01/01/2020 00:02', '--date-format', '%m/%d/%Y %H:%M') == ids[2:]


@pytest.mark.parametrize(
    'args, message',
    [
        (['--start-date', '2020-02-01 00:00:00', '--end-date', '2020-01-01 00:00:00'], 'is after end date'),
        (['--start-date', 'yesterday'], "bad date 'yesterday'"),
        (['not-a-uuid'], "not a UUID: 'not-a-uuid'"),
        ([str(uuid.UUID(int=7))], f'no such event: {uuid.UUID(int=7)}'),
        (['--limit', '0'], 'limit must be at least 1'),
    ],
)
def test_eventget_bad_input(synced, service_env, args, message):
    seed(1, datetime(2020, 1, 1))
    done = run_cmd(service_env, 'eventget', *args)
    assert done.returncode == 1
    assert message in done.stderr and done.stderr.count('\n') == 1


def test_eventpurge_older_than(synced, service_env):
    events = seed(4, datetime(2019, 12, 31, 23, 58), matches_each=2)
    done = run_cmd(service_env, 'eventpurge', '--older-than-date', '2020-01-01 00:00:00')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'purged 2 event(s)'
    left = [e.uuid for e in EventLog.select().order_by(EventLog.created)]
    assert left == [e.uuid for e in events[2:]]
    assert EventLogMatch.select().count() == 4


def test_eventpurge_limit_and_uuids(synced, service_env):
    events = seed(5, datetime(2019, 1, 1))
    done = run_cmd(service_env, 'eventpurge', '--older-than-date', '2020-01-01 00:00:00', '--limit', '3')
    assert done.stdout.strip() == 'purged 3 event(s)'
    assert [e.uuid for e in EventLog.select().order_by(EventLog.created)] == [e.uuid for e in events[3:]]
    done = run_cmd(service_env, 'eventpurge', str(events[4].uuid))
    assert done.stdout.strip() == 'purged 1 event(s)'
    assert [e.uuid for e in EventLog.select()] == [events[3].uuid]
    assert EventLogMatch.select().count() == 1


def test_eventpurge_in_batches(synced):
    from pacifica.notifications.eventlog import purge_events

    seed(7, datetime(2019, 1, 1))
    assert purge_events(older_than=datetime(2020, 1, 1), limit=5, batch=2) == 5
    assert purge_events(older_than=datetime(2020, 1, 1), batch=2) == 2
    assert EventLog.select().count() == 0 and EventLogMatch.select().count() == 0


@pytest.mark.parametrize(
    'args, message',
    [
        ([str(uuid.UUID(int=9))], f'no such event: {uuid.UUID(int=9)}'),
        (['--older-than-date', '2020-13-01 00:00:00'], "bad date '2020-13-01 00:00:00'"),
    ],
)
def test_eventpurge_bad_input_deletes_nothing(synced, service_env, args, message):
    seed(2, datetime(2019, 1, 1))
    done = run_cmd(service_env, 'eventpurge', *args)
    assert done.returncode == 1 and message in done.stderr
    assert EventLog.select().count() == 2


def test_bare_eventpurge_purges_what_is_older_than_a_day(synced, service_env):
    seed(2, datetime(2019, 1, 1))
    recent = EventLog.create(jsondata='{}', created=utcnow() - timedelta(hours=23))
    done = run_cmd(service_env, 'eventpurge')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['purged 2 event(s)']
    assert [e.uuid for e in EventLog.select()] == [recent.uuid]


def test_eventpurge_keeps_events_still_pending(synced, service_env):
    dispatched, undispatched, undelivered = seed(3, datetime(2019, 1, 1))
    EventLog.update(retry_at=datetime(2019, 1, 2)).where(EventLog.uuid == undispatched.uuid).execute()
    EventLogMatch.update(retry_at=datetime(2019, 1, 2)).where(EventLogMatch.event_log == undelivered.uuid).execute()
    done = run_cmd(service_env, 'eventpurge', '--older-than-date', '2020-01-01 00:00:00')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['purged 1 event(s)', 'kept 2 event(s) whose deliveries are still pending']
    assert {e.uuid for e in EventLog.select()} == {undispatched.uuid, undelivered.uuid}
    assert not EventLog.select().where(EventLog.uuid == dispatched.uuid).exists()


def test_eventretry_pending_queues_what_is_due_and_what_is_not(synced, service_env):
    later, soon = seed(2, datetime(2019, 1, 1))
    far = datetime(2100, 1, 1)
    EventLog.update(retry_at=far).where(EventLog.uuid == later.uuid).execute()
    EventLog.update(retry_at=datetime(2019, 1, 2)).where(EventLog.uuid == soon.uuid).execute()
    done = run_cmd(service_env, 'eventretry', '--pending')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ('requeued 2 event(s) to dispatch, 0 policy question(s), 0 deliveries')
    assert all(datetime(2020, 1, 1) < e.retry_at < far for e in EventLog.select())
    assert run_cmd(service_env, 'eventretry').returncode == 1


def test_eventretry_pending_rejects_a_bad_uuid_before_requeueing_anything(synced, service_env):
    (event,) = seed(1, datetime(2019, 1, 1))
    EventLog.update(retry_at=datetime(2019, 1, 2)).execute()
    done = run_cmd(service_env, 'eventretry', '--pending', 'not-a-uuid')
    assert done.returncode == 1 and "not a UUID: 'not-a-uuid'" in done.stderr
    assert EventLog.get_by_id(event.uuid).retry_at == datetime(2019, 1, 2)
