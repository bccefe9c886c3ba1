"""``pacifica-notifications``: start-up checks, the CherryPy config file, the user header."""
from __future__ import annotations

import subprocess
from pathlib import Path

import requests

from .conftest import run_cmd
from .procs import notifications_server, script

REPO = Path(__file__).resolve().parent.parent


def test_help_matches_the_seed(service_env):
    done = subprocess.run([script('pacifica-notifications'), '--help'], env=service_env,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.startswith('usage: pacifica-notifications [-h] [-c CONFIG] [-p PORT] [-a ADDRESS]')
    for option in ('-c CONFIG, --config CONFIG, --cpconfig CONFIG', '-p PORT, --port PORT',
                   '-a ADDRESS, --address ADDRESS'):
        assert option in done.stdout


def test_refuses_to_start_before_dbsync(database, service_env):
    done = subprocess.run([script('pacifica-notifications'), '-p', '1'], env=service_env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == ('pacifica-notifications: cannot start: database schema is 0.0, '
                                   'this code needs 4.x; run pacifica-notifications-cmd dbsync')


def test_refuses_to_start_without_database(service_env, tmp_path):
    env = {**service_env, 'PEEWEE_URL': f"sqlite:///{tmp_path / 'no' / 'dir.db'}"}
    done = subprocess.run([script('pacifica-notifications'), '-p', '1'], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and 'cannot start: database unavailable' in done.stderr


def test_repo_server_conf(database, service_env, tmp_path):
    assert run_cmd(service_env, 'dbsync').returncode == 0
    server = notifications_server(service_env, tmp_path / 'out.log', '--cpconfig',
                                  str(REPO / 'server.conf'), cwd=tmp_path)
    try:
        server.wait_ready()
        resp = requests.get(server.url + '/eventmatch', headers={'Http-Remote-User': 'x'}, timeout=10)
        assert resp.status_code == 200 and resp.json() == []
        assert resp.headers['Content-Type'] == 'application/json'
        assert 'GET /eventmatch' in (tmp_path / 'access.log').read_text()
    finally:
        server.stop()


def test_user_header_is_configurable(database, service_env, tmp_path):
    assert run_cmd(service_env, 'dbsync').returncode == 0
    env = {**service_env, 'USER_HEADER': 'X-Remote-User', 'DEFAULT_USER': 'nobody'}
    server = notifications_server(env, tmp_path / 'out.log').wait_ready()
    try:
        body = {'name': 'n', 'jsonpath': 'data', 'target_url': 'http://127.0.0.1:9/'}
        made = requests.post(server.url + '/eventmatch', json=body, timeout=10,
                             headers={'X-Remote-User': 'carol', 'Http-Remote-User': 'mallory'})
        assert made.json()['user'] == 'carol'
        anonymous = requests.post(server.url + '/eventmatch', json=body, timeout=10)
        assert anonymous.json()['user'] == 'nobody'
    finally:
        server.stop()


def test_embedded_default_needs_no_setup(service_env, tmp_path):
    env = {k: v for k, v in service_env.items() if k != 'PEEWEE_URL'}
    server = notifications_server(env, tmp_path / 'out.log').wait_ready()
    try:
        resp = requests.get(server.url + '/eventmatch', timeout=10)
        assert resp.status_code == 200 and resp.json() == []
        assert (Path(env['NOTIFICATIONS_DATA_DIR']) / 'notifications.sqlite3').is_file()
    finally:
        server.stop()


def test_database_outage_is_503_then_recovers(service_env, tmp_path):
    folder = tmp_path / 'db'
    folder.mkdir()
    env = {**service_env, 'PEEWEE_URL': f"sqlite:///{folder / 'n.sqlite3'}"}
    assert run_cmd(env, 'dbsync').returncode == 0
    server = notifications_server(env, tmp_path / 'out.log').wait_ready()
    try:
        folder.rename(tmp_path / 'away')
        for method, path in (('GET', '/eventmatch'), ('POST', '/receive')):
            resp = requests.request(method, server.url + path, json={'a': 1}, timeout=10)
            assert resp.status_code == 503 and 'database is unavailable' in resp.json()['message']
        (tmp_path / 'away').rename(folder)
        assert requests.get(server.url + '/eventmatch', timeout=10).json() == []
    finally:
        server.stop()
