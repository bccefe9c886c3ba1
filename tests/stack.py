"""The service as deployed, for end-to-end tests: API and worker processes, policy and target servers.

The ``stack`` and ``case`` fixtures (in ``conftest``) build one per test module.
"""

from __future__ import annotations

import json
import uuid

import requests

from pacifica.notifications.models import SENDING
from pacifica.notifications.orm import EventLogMatch, EventMatch, OrmSync

from .conftest import (
    FIXTURES,
    bind_empty,
    child_env,
    delete_queue,
    drop_tables,
    make_db_url,
    make_env,
    release,
)
from .httpfakes import Recorder
from .procs import celery_worker, notifications_server, wait_until

EVENT = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))


def fresh_event() -> dict:
    """The fixture event under a new id (the same id twice is one event)."""
    return {**EVENT, 'eventID': str(uuid.uuid4())}


class Stack:
    """The service as deployed: API process, worker process, policy and target servers."""

    def __init__(self, folder, **settings: str):
        self.db = bind_empty(make_db_url(folder))
        self.db.connect(reuse_if_open=True)
        OrmSync.update_tables()
        self.db.close()
        self.policy, self.target = Recorder(), Recorder()
        self.env = child_env(
            {
                **make_env(folder, make_db_url(folder)),
                'POLICY_URL': self.policy.url,
                'RETRY_SCHEDULE': '0.2,0.4',
                'CONNECT_TIMEOUT': '1',
                'READ_TIMEOUT': '1',
                **settings,
            }
        )
        self.api = notifications_server(self.env, folder / 'api.log', '--no-worker').wait_ready()
        self.worker = celery_worker(self.env, folder / 'worker.log')

    def subscribe(self, user: str, **fields) -> dict:
        body = {'name': 'sub', 'jsonpath': 'data', **fields}
        resp = requests.post(self.api.url + '/eventmatch', json=body, timeout=10, headers={'Http-Remote-User': user})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def post_event(self, event: dict | None = None) -> str:
        event = event or fresh_event()
        resp = requests.post(self.api.url + '/receive', json=event, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()['uuid']

    def close(self) -> None:
        """Tear down: the module is over, so no clean shutdown is owed (a warm one takes seconds)."""
        for proc in (self.worker, self.api):
            proc.kill()
            proc.stop()
        self.policy.close()
        self.target.close()
        delete_queue(self.env)
        drop_tables(self.db)
        release(self.db)


def rows_of(sub: dict) -> list[EventLogMatch]:
    return list(EventLogMatch.select().where(EventLogMatch.event_match == uuid.UUID(sub['uuid'])))


def settled(sub: dict, count: int = 1):
    """Wait until ``count`` log rows of the subscription have a target or final policy answer."""

    def done():
        rows = rows_of(sub)
        final = [
            r
            for r in rows
            if r.target_status_code not in (None, SENDING) or (r.policy_status_code or '').startswith('4')
        ]
        return rows if len(final) >= count else None

    return wait_until(done, 30, what=f'subscription {sub["uuid"]} to settle')


def fetched(sub: dict) -> EventMatch:
    return EventMatch.get_by_id(uuid.UUID(sub['uuid']))
