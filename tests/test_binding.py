"""The database binding: bound on first use, and never shared with a forked child."""

from __future__ import annotations

import os
import threading

import pytest
from peewee import SqliteDatabase

from pacifica.notifications import orm
from pacifica.notifications.binding import DB
from pacifica.notifications.orm import EventMatch

from .conftest import drop_tables

pytestmark = pytest.mark.fast


def test_db_binds_itself_to_the_configured_database_on_first_use(service_env, db_url):
    DB.initialize(None)
    DB.drop_tables([orm.EventLogMatch, orm.EventLog, orm.EventMatch, orm.NotificationSystem], safe=True)
    try:
        assert DB.obj is not None
        assert not EventMatch.table_exists()
        EventMatch.create_table()
        assert EventMatch.table_exists()
    finally:
        drop_tables(DB.obj)


def _in_child(check) -> int:
    """Fork; run ``check`` in the child; return the child's exit status (0: it held)."""
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if check() else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # fork with threads running
def test_a_forked_child_never_uses_the_parents_connections(synced):
    EventMatch.create(name='s', jsonpath='data', user='u', target_url='http://127.0.0.1:9/')
    mine = DB.connection()
    other: list = []
    held, release = threading.Event(), threading.Event()

    def hold_a_connection():  # like the worker's sweep thread, busy at the moment of the fork
        DB.connect(reuse_if_open=True)
        other.append(DB.connection())
        held.set()
        release.wait(30)
        DB.close()

    thread = threading.Thread(target=hold_a_connection)
    thread.start()
    assert held.wait(30)
    try:

        def child_uses_its_own():
            conn = DB.connection()
            fresh = conn is not mine and conn is not other[0]
            count = EventMatch.select().count()
            DB.close()
            if hasattr(DB.obj, 'close_all'):
                DB.obj.close_all()
            if not isinstance(DB.obj, SqliteDatabase):  # SQLite has no session to end
                for inherited in (mine, other[0]):  # as garbage collection would
                    inherited.close()
            return fresh and count == 1

        assert _in_child(child_uses_its_own) == 0
    finally:
        release.set()
        thread.join(30)
    # The child dropped what it inherited without ending the parent's sessions.
    assert DB.connection() is mine
    assert EventMatch.select().count() == 1
