"""Signing secrets at rest: sealed with ``secret_key``, and what the service does with keys that cannot open them."""

from __future__ import annotations

import subprocess
import uuid

import pytest
import requests
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from pacifica.notifications.orm import EventMatch

from .conftest import run_cmd
from .procs import script
from .stack import Stack, settled

KEY = Fernet.generate_key().decode()


def stored_secret(sub_uuid: str) -> str:
    return EventMatch.get_by_id(uuid.UUID(sub_uuid)).signing_secret


def test_sealed_secrets_sign_deliveries(tmp_path):
    stack = Stack(tmp_path, SECRET_KEY=KEY)
    try:
        sub = stack.subscribe('sealer', target_url=stack.target.url + '/sealed')
        resp = requests.get(
            f'{stack.api.url}/eventmatch/{sub["uuid"]}/secret', headers={'Http-Remote-User': 'sealer'}, timeout=10
        )
        secret = resp.json()['key']
        stored = stored_secret(sub['uuid'])
        assert stored.startswith('fernet:') and secret not in stored and secret[6:] not in stored
        stack.post_event()
        settled(sub)
        (call,) = stack.target.calls('/sealed')
        Webhook(secret).verify(call.body, call.headers, json_parse=False)
    finally:
        stack.close()


def start(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [script('pacifica-notifications'), '-p', '1'], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_dbsync_seals_and_reseals_and_the_server_checks_the_key(database, service_env):
    assert run_cmd(service_env, 'dbsync').returncode == 0
    database.connect(reuse_if_open=True)
    plain = EventMatch.create(name='n', jsonpath='data', user='u', target_url='http://h/')
    secret = plain.signing_secret
    assert secret.startswith('whsec_')

    sealed = run_cmd({**service_env, 'SECRET_KEY': KEY}, 'dbsync')
    assert sealed.returncode == 0, sealed.stderr
    assert 'sealed 1 subscription(s)' in sealed.stdout
    first = stored_secret(str(plain.uuid))
    assert first.startswith('fernet:') and Fernet(KEY.encode()).decrypt(first[7:].encode()).decode() == secret
    assert run_cmd({**service_env, 'SECRET_KEY': KEY}, 'dbsync').stdout == ''  # nothing left to seal

    newer = Fernet.generate_key().decode()
    rotated = run_cmd({**service_env, 'SECRET_KEY': f'{newer},{KEY}'}, 'dbsync')
    assert rotated.returncode == 0 and 'sealed 1 subscription(s)' in rotated.stdout
    second = stored_secret(str(plain.uuid))
    assert Fernet(newer.encode()).decrypt(second[7:].encode()).decode() == secret

    refused = start(service_env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'pacifica-notifications: cannot start: [notifications] secret_key (SECRET_KEY): '
        'the signing secrets are encrypted, but no secret_key is configured'
    )
    wrong = start({**service_env, 'SECRET_KEY': KEY})
    assert wrong.returncode == 1 and 'no key of secret_key opens the stored signing secrets' in wrong.stderr


@pytest.mark.parametrize('value', ['not-a-key', Fernet.generate_key().decode()[:-2], f'{KEY},short'])
def test_a_bad_secret_key_is_one_line_at_start(service_env, value):
    done = start({**service_env, 'SECRET_KEY': value})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f'pacifica-notifications: cannot start: [notifications] secret_key (SECRET_KEY) = {value!r}: '
        'expected Fernet keys separated by commas (each the URL-safe base64 of 32 bytes)'
    )


def test_without_a_key_the_server_says_secrets_are_unencrypted(database, service_env, tmp_path):
    assert run_cmd(service_env, 'dbsync').returncode == 0
    done = subprocess.run(
        [script('pacifica-notifications'), '-p', '0', '--no-worker', '--stop-after-a-moment'],
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 'signing secrets are stored unencrypted' in done.stdout + done.stderr
