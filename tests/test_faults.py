"""Fault injection: every event ``/receive`` accepted reaches every entitled target, whatever fails.

Each test runs the service as deployed (the API with ``--no-worker``, Celery
worker processes, a policy server and a catch-all target on loopback), posts
a burst of events, breaks one part in the middle of it, and then waits until
every event answered with 200 has reached every subscription's target.
Delivery is at least once: a target may see the rare delivery twice, with the
same ``webhook-id``; each test reports how many (``-rA`` or the summary at the
end of the run shows them).  Run alone with ``pytest -m fault``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from pacifica.notifications.orm import EventLogMatch, EventMatch, OrmSync

from .conftest import FAULT_REPORTS, bind_empty, child_env, delete_queue, drop_tables, make_db_url, make_env, release
from .httpfakes import Answer, Recorder
from .privates import PrivatePostgres, PrivateRabbitMQ, PrivateRedis
from .procs import Proc, celery_worker, free_port, notifications_server, wait_until

pytestmark = pytest.mark.fault

#: Short retry schedule and timeouts, so that retries happen within seconds.
FAST = {'RETRY_SCHEDULE': '0.5,1,1,2,2,3,3,3,3,3', 'CONNECT_TIMEOUT': '1', 'READ_TIMEOUT': '2'}
#: A short recovery sweep, for faults that only the sweep can repair (the API dying
#: between commit and queue); broker and worker faults are repaired with the defaults.
FAST_SWEEP = {'RECOVER_AFTER': '3', 'SWEEP_INTERVAL': '0.5'}
USERS = ('alice', 'bob')
SUBS_PER_USER = 2
#: Longest wait for the last delivery after the fault is over.
SETTLE = 75
#: What "recovered" means: every lost piece of work delivered this soon after the fault ended.
RECOVERY_LIMIT = 60.0


class Deployment:
    """API, workers, policy and target servers; subscriptions for every user."""

    def __init__(
        self,
        folder: Path,
        db_url: str | None = None,
        broker_url: str | None = None,
        target_port: int = 0,
        fast_sweep: bool = True,
    ):
        self.folder = folder
        self.db = bind_empty(db_url or make_db_url(folder))
        self.db.connect(reuse_if_open=True)
        OrmSync.update_tables()
        self.db.close()
        self.policy = Recorder()
        self.target = Recorder() if not target_port else None
        self.target_url = self.target.url if self.target else f'http://127.0.0.1:{target_port}'
        settings = {
            **make_env(folder, db_url or make_db_url(folder)),
            **FAST,
            'POLICY_URL': self.policy.url,
            **(FAST_SWEEP if fast_sweep else {}),
        }
        if broker_url:
            settings['BROKER_URL'] = broker_url
        self.env = child_env(settings)
        self.api = self.start_api()
        self.workers: list[Proc] = []
        self.paths = [f'/{user}/{index}' for user in USERS for index in range(SUBS_PER_USER)]
        for path in self.paths:
            self.subscribe(path.split('/')[1], path)
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.fault_over: float | None = None

    def start_api(self):
        name = f'api-{uuid.uuid4().hex[:6]}.log'
        return notifications_server(self.env, self.folder / name, '--no-worker').wait_ready()

    def start_worker(self) -> Proc:
        """A worker as operators run it: Celery's default prefork pool, two processes."""
        worker = celery_worker(self.env, self.folder / f'worker-{len(self.workers)}.log', concurrency=2, pool='prefork')
        self.workers.append(worker)
        return worker

    def subscribe(self, user: str, path: str) -> None:
        resp = requests.post(
            self.api.url + '/eventmatch',
            timeout=10,
            headers={'Http-Remote-User': user},
            json={'name': path, 'jsonpath': 'data', 'target_url': self.target_url + path},
        )
        assert resp.status_code == 200, resp.text

    def post(self) -> None:
        """Post one new event as the producer does: once, and note whether it was accepted."""
        event_id = uuid.uuid4().hex
        event = {
            'cloudEventsVersion': '0.1',
            'eventType': 'org.pacifica.metadata.ingest',
            'source': '/pacifica/metadata/ingest',
            'eventID': event_id,
            'data': [{'_id': 1}],
        }
        try:
            resp = requests.post(self.api.url + '/receive', json=event, timeout=10)
        except requests.ConnectionError:
            self.refused.append('connection refused')
            return
        if resp.status_code == 200:
            self.accepted.append(event_id)
        else:
            assert resp.status_code == 503 and resp.json()['status'].startswith('503'), resp.text
            self.refused.append(resp.status_code)

    def burst(self, count: int, pace: float = 0.03) -> threading.Thread:
        """Post ``count`` events from a background thread, ``pace`` seconds apart."""
        stop = threading.Event()

        def run():
            for _ in range(count):
                self.post()
                stop.wait(pace)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def wait_accepted(self, count: int) -> None:
        wait_until(lambda: len(self.accepted) >= count, 30, what=f'{count} accepted events')

    def delivered(self, since: float = 0.0) -> set[tuple[str, str]]:
        """The (path, event) pairs the target received (since ``since``, by the monotonic clock)."""
        return {(call.path, call.json()['eventID']) for call in self.target.calls() if call.at >= since}

    def recovered(self) -> None:
        """Note that the fault is over: recovery time counts from now."""
        self.fault_over = time.monotonic()

    def settle(self, burst: threading.Thread | None = None, refusals: bool = False, since: float = 0.0) -> dict:
        """Wait until every accepted event reached every target (since ``since``); return the figures.

        When the fault's end was noted, the last delivery must come within
        :data:`RECOVERY_LIMIT` seconds of it.  Unless the fault is the
        database's (``refusals``), ``/receive`` must have refused nothing.
        """
        if burst is not None:
            burst.join(60)
            assert not burst.is_alive(), 'the burst did not finish'
        expected = {(path, event_id) for event_id in self.accepted for path in self.paths}
        assert expected, 'no event was accepted'
        try:
            wait_until(
                lambda: expected <= self.delivered(since), SETTLE, interval=0.2, what=f'{len(expected)} deliveries'
            )
        except AssertionError:
            missing = expected - self.delivered(since)
            raise AssertionError(
                f'{len(missing)} of {len(expected)} deliveries lost, e.g. {sorted(missing)[:3]}'
            ) from None
        calls = self.target.calls()
        ids = [call.headers.get('webhook-id') for call in calls]
        assert not EventMatch.select().where(EventMatch.disabled.is_null(False)).exists()
        assert refusals or not self.refused, f'/receive refused {self.refused}'
        figures = {
            'accepted': len(self.accepted),
            'refused': len(self.refused),
            'deliveries': len(expected),
            'duplicates': len(ids) - len(set(ids)),
        }
        if self.fault_over is not None:
            last = max(call.at for call in calls)
            figures['recovery_s'] = round(max(0.0, last - self.fault_over), 1)
            assert figures['recovery_s'] <= RECOVERY_LIMIT, figures
        return figures

    def close(self) -> None:
        """Tear down: the test is over, so no clean shutdown is owed (a warm one takes seconds)."""
        for proc in [*self.workers, self.api]:
            proc.kill()
            proc.stop()
        self.policy.close()
        if self.target:
            self.target.close()
        delete_queue(self.env)
        release(self.db)
        drop_tables(self.db)
        release(self.db)


@pytest.fixture
def deploy(tmp_path, request):
    """Make deployments that are torn down after the test, whatever happens."""
    made: list[Deployment] = []

    def make(**kwargs) -> Deployment:
        made.append(Deployment(tmp_path, **kwargs))
        return made[-1]

    yield make
    for deployment in made:
        deployment.close()


def report(request, figures: dict) -> None:
    """Keep this test's figures for the summary at the end of the run."""
    request.config.stash.setdefault(FAULT_REPORTS, []).append((request.node.name, figures))


def leg_broker() -> str:
    """The kind of broker this run tests: 'amqp', 'redis' or 'embedded'."""
    url = os.environ.get('TEST_BROKER_URL', '')
    return 'amqp' if url.startswith('amqp') else 'redis' if url.startswith('redis') else 'embedded'


def kill_the_worker_mid_burst(stack: Deployment, answer: Answer, events: int, calls: int) -> threading.Thread:
    """Start a worker, post a burst, kill the worker once the target has had ``calls`` calls (answered by ``answer``).

    Returns the burst's thread.
    """
    for path in stack.paths:
        stack.target.script(path, answer)
    stack.start_worker()
    burst = stack.burst(events)
    wait_until(lambda: len(stack.target.calls()) >= calls, 30, what='deliveries under way')
    stack.workers[0].kill()
    return burst


def test_worker_killed_mid_burst(deploy, request):
    stack = deploy(fast_sweep=False)
    burst = kill_the_worker_mid_burst(stack, Answer(delay=0.2), 30, 10)
    stack.start_worker()
    stack.recovered()
    report(request, stack.settle(burst))


def test_worker_killed_while_its_calls_hang(deploy, request):
    """No call the killed worker made was answered, so every event must reach every target again after the kill."""
    stack = deploy(fast_sweep=False)
    burst = kill_the_worker_mid_burst(stack, Answer(delay=60), 10, 4)
    killed = time.monotonic()
    for path in stack.paths:
        stack.target.script(path, Answer())
    stack.start_worker()
    stack.recovered()
    report(request, stack.settle(burst, since=killed))


@pytest.fixture
def broker(tmp_path):
    """A private broker of the kind this run tests, to stop and start at will."""
    kind = leg_broker()
    if kind == 'embedded':
        pytest.skip('the embedded broker is a folder, not a server to restart')
    with (PrivateRabbitMQ if kind == 'amqp' else PrivateRedis)(tmp_path / 'broker') as server:
        yield server


@pytest.fixture
def postgres(tmp_path):
    """A private PostgreSQL server, to stop and start at will."""
    with PrivatePostgres(tmp_path / 'postgres') as server:
        yield server


def test_broker_restarted_mid_burst(broker, deploy, request):
    stack = deploy(broker_url=broker.url, fast_sweep=False)
    stack.start_worker()
    burst = stack.burst(40)
    stack.wait_accepted(10)
    broker.stop()
    # The burst may be over by now (intake does not wait for the broker): post while it is down.
    accepted, refused = len(stack.accepted), len(stack.refused)
    for _ in range(5):
        stack.post()
    assert len(stack.refused) == refused and len(stack.accepted) >= accepted + 5, 'refused while the broker was down'
    broker.start()
    stack.recovered()
    figures = stack.settle(burst)
    assert figures['refused'] == 0
    report(request, figures)


def test_postgres_restarted_mid_burst(postgres, deploy, request):
    stack = deploy(db_url=postgres.url)
    stack.start_worker()
    burst = stack.burst(40)
    stack.wait_accepted(10)
    postgres.stop()
    refused = len(stack.refused)
    wait_until(lambda: len(stack.refused) >= refused + 3, 30, what='503 answers while down')
    postgres.start()
    report(request, stack.settle(burst, refusals=True))


def test_target_refusing_connections_then_back(deploy, request):
    port = free_port()
    stack = deploy(target_port=port)
    stack.start_worker()
    burst = stack.burst(20)
    stack.wait_accepted(10)
    refused = EventLogMatch.select().where(EventLogMatch.target_status_code == 'unreachable')
    wait_until(refused.exists, 30, what='deliveries refused')
    stack.target = Recorder(port)
    report(request, stack.settle(burst))


def test_policy_failing_then_recovering(deploy, request):
    stack = deploy()
    for user in USERS:
        stack.policy.script(f'/events/{user}', Answer(500, 'policy down'))
    stack.start_worker()
    burst = stack.burst(20)
    wait_until(lambda: len(stack.policy.calls()) >= 10, 30, what='policy questions')
    assert stack.target.calls() == []
    for user in USERS:
        stack.policy.script(f'/events/{user}', Answer())
    report(request, stack.settle(burst))


def test_api_killed_and_restarted_while_events_are_queued(deploy, request):
    stack = deploy()
    for _ in range(15):
        stack.post()
    stack.api.kill()
    stack.start_worker()
    stack.api = stack.start_api()
    for _ in range(15):
        stack.post()
    report(request, stack.settle())
