"""The private servers of ``tests/privates.py`` really serve, stop, restart and clean up.

Fault-injection tests rely on them to break a server without touching the
machine's shared ones, so each test here checks what such a test needs: data
kept (or not) across a clean restart and a crash, clients refused while the
server is down, and no process left once it is closed.
"""

from __future__ import annotations

import os
import socket

import kombu
import kombu.exceptions
import peewee
import pytest
import redis

from pacifica.notifications.database import database_from_url

from .privates import PrivatePostgres, PrivateRabbitMQ, PrivateRedis

pytestmark = pytest.mark.fault

SHARED_PORTS = {5432, 3306, 6379, 5672}


def gone(pid: int) -> bool:
    """Whether no process has this id any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Note(peewee.Model):
    text = peewee.TextField()


def test_postgres_keeps_committed_data_across_restart_and_crash(tmp_path):
    with PrivatePostgres(tmp_path, database='faults') as pg:
        assert pg.port not in SHARED_PORTS
        db = database_from_url(pg.url)
        db.bind([Note])
        db.create_tables([Note])
        Note.create(text='before restart')
        db.close_all()

        pg.stop()
        with pytest.raises(peewee.OperationalError):
            db.connect()

        pg.start()
        Note.create(text='before crash')
        db.close_all()
        pg.restart(crash=True)
        assert sorted(n.text for n in Note.select()) == ['before crash', 'before restart']
        db.close_all()
        pid = pg.proc.pid
    assert gone(pid)
    assert not pg.root.exists()


def test_redis_refuses_while_stopped_and_serves_after_restart(tmp_path):
    with PrivateRedis(tmp_path) as server:
        assert server.port not in SHARED_PORTS
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        assert client.ping()
        client.set('key', 'value')

        server.stop()
        with pytest.raises(redis.ConnectionError):
            client.ping()

        server.start()
        assert client.ping()
        assert client.get('key') is None, 'a restart empties a Redis without persistence'
        pid = server.proc.pid
    assert gone(pid)


def test_persistent_redis_keeps_writes_across_a_crash(tmp_path):
    with PrivateRedis(tmp_path, persistent=True) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        client.set('key', 'value')
        server.restart(crash=True)
        assert client.get('key') == b'value'


def test_a_start_that_fails_says_why(tmp_path):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        server = PrivateRedis(tmp_path)
        server.port = taken.getsockname()[1]
        with pytest.raises(AssertionError, match=r'(?s)exited with status.*tail of'):
            server.start(timeout=10)
        server.close()


def test_rabbitmq_keeps_durable_messages_across_restart_and_crash(tmp_path):
    with PrivateRabbitMQ(tmp_path) as broker:
        assert broker.port not in SHARED_PORTS
        queue = kombu.Queue('faults', durable=True)

        def publish(body: str) -> None:
            with kombu.Connection(broker.url, transport_options={'confirm_publish': True}) as conn:
                conn.Producer().publish(
                    body, routing_key='faults', declare=[queue], delivery_mode='persistent', retry=False
                )

        def consume() -> str | None:
            with kombu.Connection(broker.url) as conn:
                message = queue(conn.default_channel).get(no_ack=True)
                return message and message.payload

        publish('across restart')
        broker.stop()
        with pytest.raises(kombu.exceptions.OperationalError):
            kombu.Connection(broker.url, connect_timeout=1).ensure_connection(max_retries=0)
        broker.start()
        assert consume() == 'across restart'

        publish('across crash')
        broker.restart(crash=True)
        assert consume() == 'across crash'
        assert broker.ctl('status').returncode == 0
        pid = broker.proc.pid
    assert gone(pid)
