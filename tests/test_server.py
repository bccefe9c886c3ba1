"""``pacifica-notifications``: start-up checks, the CherryPy config file, the user header."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from pacifica.notifications import orm

from .conftest import FIXTURES, run_cmd
from .httpfakes import Recorder
from .procs import notifications_server, script, wait_until

REPO = Path(__file__).resolve().parent.parent


def test_help_matches_the_seed(service_env):
    done = subprocess.run(
        [script('pacifica-notifications'), '--help'],
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith('usage: pacifica-notifications [-h] [-c CONFIG] [-p PORT] [-a ADDRESS]')
    for option in (
        '-c CONFIG, --config CONFIG, --cpconfig CONFIG',
        '-p PORT, --port PORT',
        '-a ADDRESS, --address ADDRESS',
    ):
        assert option in done.stdout


def test_refuses_to_start_before_dbsync(database, service_env):
    done = subprocess.run(
        [script('pacifica-notifications'), '-p', '1'],
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        'pacifica-notifications: cannot start: database schema is 0.0, '
        f'this code needs {orm.SCHEMA_MAJOR}.x; run pacifica-notifications-cmd dbsync'
    )


def test_refuses_to_start_without_database(service_env, tmp_path):
    env = {**service_env, 'PEEWEE_URL': f'sqlite:///{tmp_path / "no" / "dir.db"}'}
    done = subprocess.run(
        [script('pacifica-notifications'), '-p', '1'], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1 and 'cannot start: database unavailable' in done.stderr


def test_repo_server_conf(database, service_env, tmp_path):
    assert run_cmd(service_env, 'dbsync').returncode == 0
    server = notifications_server(
        service_env, tmp_path / 'out.log', '--no-worker', '--cpconfig', str(REPO / 'server.conf'), cwd=tmp_path
    )
    try:
        server.wait_ready()
        resp = requests.get(server.url + '/eventmatch', headers={'Http-Remote-User': 'x'}, timeout=10)
        assert resp.status_code == 200 and resp.json() == []
        assert resp.headers['Content-Type'] == 'application/json'
        event = json.loads((FIXTURES / 'metadata-ingest-event.json').read_text())
        received = requests.post(server.url + '/receive', json=event, timeout=10)
        assert received.status_code == 200 and received.headers['Content-Type'] == 'application/json'
        wait_until(lambda: 'POST /receive HTTP/1.1" 200' in (tmp_path / 'access.log').read_text())
        assert 'GET /eventmatch' in (tmp_path / 'access.log').read_text()
        assert 'served by CherryPy' not in server.output()
    finally:
        server.stop()


@pytest.mark.parametrize(
    'path, body, answer_key',
    [
        ('/receive', json.loads((FIXTURES / 'metadata-ingest-event.json').read_text()), 'status'),
        ('/eventmatch', {'name': 'n', 'jsonpath': 'data', 'target_url': 'http://127.0.0.1:9/'}, 'uuid'),
    ],
)
def test_tools_on_fast_routes_are_applied(database, service_env, tmp_path, path, body, answer_key):
    """A tool the CherryPy file turns on at a fast route still applies there (the fast path steps aside)."""
    assert run_cmd(service_env, 'dbsync').returncode == 0
    conf = tmp_path / 'gzip.conf'
    conf.write_text(f"[{path}]\ntools.gzip.on: True\ntools.gzip.mime_types: ['application/json']\n")
    server = notifications_server(service_env, tmp_path / 'out.log', '--no-worker', '--cpconfig', str(conf))
    try:
        server.wait_ready()
        assert f'{path} is served by CherryPy, because the CherryPy config turns on gzip there' in server.output()
        resp = requests.post(server.url + path, json=body, timeout=10, headers={'Accept-Encoding': 'gzip'})
        assert resp.status_code == 200 and resp.headers.get('Content-Encoding') == 'gzip'
        assert answer_key in resp.json()
    finally:
        server.stop()


def test_user_header_is_configurable(database, service_env, tmp_path):
    assert run_cmd(service_env, 'dbsync').returncode == 0
    env = {**service_env, 'USER_HEADER': 'X-Remote-User', 'DEFAULT_USER': 'nobody'}
    server = notifications_server(env, tmp_path / 'out.log', '--no-worker').wait_ready()
    try:
        body = {'name': 'n', 'jsonpath': 'data', 'target_url': 'http://127.0.0.1:9/'}
        made = requests.post(
            server.url + '/eventmatch',
            json=body,
            timeout=10,
            headers={'X-Remote-User': 'carol', 'Http-Remote-User': 'mallory'},
        )
        assert made.json()['user'] == 'carol'
        anonymous = requests.post(server.url + '/eventmatch', json=body, timeout=10)
        assert anonymous.json()['user'] == 'nobody'
    finally:
        server.stop()


def test_embedded_default_needs_no_setup(service_env, tmp_path):
    env = {k: v for k, v in service_env.items() if k != 'PEEWEE_URL'}
    server = notifications_server(env, tmp_path / 'out.log', '--no-worker').wait_ready()
    try:
        resp = requests.get(server.url + '/eventmatch', timeout=10)
        assert resp.status_code == 200 and resp.json() == []
        assert (Path(env['NOTIFICATIONS_DATA_DIR']) / 'notifications.sqlite3').is_file()
    finally:
        server.stop()


def test_database_outage_is_503_then_recovers(service_env, tmp_path):
    folder = tmp_path / 'db'
    folder.mkdir()
    env = {**service_env, 'PEEWEE_URL': f'sqlite:///{folder / "n.sqlite3"}'}
    assert run_cmd(env, 'dbsync').returncode == 0
    server = notifications_server(env, tmp_path / 'out.log', '--no-worker').wait_ready()
    try:
        folder.rename(tmp_path / 'away')
        for method, path in (('GET', '/eventmatch'), ('POST', '/receive')):
            resp = requests.request(method, server.url + path, json={'a': 1}, timeout=10)
            assert resp.status_code == 503 and 'database is unavailable' in resp.json()['message']
        (tmp_path / 'away').rename(folder)
        assert requests.get(server.url + '/eventmatch', timeout=10).json() == []
    finally:
        server.stop()


def test_one_command_runs_the_whole_embedded_service(service_env, tmp_path):
    """The issue's acceptance: embedded database and broker, worker included, Ctrl-C stops all."""
    policy, target = Recorder(), Recorder()
    env = {k: v for k, v in service_env.items() if k not in ('PEEWEE_URL', 'BROKER_URL')}
    env['POLICY_URL'] = policy.url
    server = notifications_server(env, tmp_path / 'out.log').wait_ready()
    try:
        worker_pid = int(
            server.wait_for_output('Started embedded Celery worker (pid ')
            .output()
            .split('Started embedded Celery worker (pid ')[1]
            .split(')')[0]
        )
        server.wait_for_output(' ready.')
        sub = requests.post(
            server.url + '/eventmatch',
            timeout=10,
            headers={'Http-Remote-User': 'dmlb2001'},
            json={
                'name': 'm',
                'jsonpath': 'data',
                'target_url': target.url + '/hook',
                'auth': {'type': 'basic', 'basic': {'username': 'u', 'password': 'p'}},
                'extensions': {'mine': True},
            },
        ).json()
        event = json.loads((FIXTURES / 'metadata-ingest-event.json').read_text())
        event_uuid = requests.post(server.url + '/receive', json=event, timeout=10).json()['uuid']
        (call,) = wait_until(lambda: target.calls('/hook'), 30, what='delivery')
        assert call.json() == {**event, 'extensions': {'mine': True}}
        assert call.headers['Authorization'] == 'Basic dTpw'
        lines = wait_until(
            lambda: [
                line for line in run_cmd(env, 'eventget', event_uuid).stdout.splitlines() if line.endswith('target 200')
            ],
            30,
            what='logged delivery',
        )
        assert lines[0].startswith(f'    ELM {sub["uuid"]} (') and lines[0].endswith('policy 200 target 200')
        assert 'WARNING: no policy_url' not in server.output()

        os.kill(server.proc.pid, signal.SIGINT)
        server.proc.wait(timeout=30)
        wait_until(
            lambda: (
                not Path(f'/proc/{worker_pid}').exists()
                or 'zombie' in Path(f'/proc/{worker_pid}/status').read_text().lower()
            ),
            30,
            what='embedded worker to stop',
        )
    finally:
        server.stop()
        policy.close()
        target.close()


def worker_pids(server) -> list[int]:
    """The pids of the embedded workers the server says it started, in order."""
    marker = 'Started embedded Celery worker (pid '
    return [int(part.split(')')[0]) for part in server.output().split(marker)[1:]]


def test_a_dead_embedded_worker_is_replaced(service_env, tmp_path):
    target = Recorder()
    env = {k: v for k, v in service_env.items() if k not in ('PEEWEE_URL', 'BROKER_URL')}
    server = notifications_server(env, tmp_path / 'out.log').wait_ready()
    try:
        (first,) = wait_until(lambda: worker_pids(server), 30, what='the embedded worker')
        server.wait_for_output(' ready.')
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: len(worker_pids(server)) == 2, 30, what='a new embedded worker')
        requests.post(
            server.url + '/eventmatch',
            timeout=10,
            headers={'Http-Remote-User': 'u'},
            json={'name': 'm', 'jsonpath': 'data', 'target_url': target.url + '/hook'},
        )
        requests.post(server.url + '/receive', json={'source': '/s', 'id': '1', 'data': [1]}, timeout=10)
        wait_until(lambda: target.calls('/hook'), 30, what='delivery by the new worker')
    finally:
        server.stop()
        target.close()


def test_no_policy_server_is_announced(service_env, tmp_path):
    env = {k: v for k, v in service_env.items() if k != 'PEEWEE_URL'}
    server = notifications_server(env, tmp_path / 'out.log', '--no-worker').wait_ready()
    try:
        assert 'WARNING: no policy_url is configured: the policy check is SKIPPED' in server.output()
    finally:
        server.stop()
