"""Signed deliveries in both CloudEvents modes, end to end, verified by the ``standardwebhooks`` package.

Real API and worker processes deliver to a real HTTP target; each delivery is
checked the way a subscriber checks it: with the Standard Webhooks library
and the subscription's secret, as ``GET /eventmatch/<uuid>/secret`` gives it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

from pacifica.notifications.orm import EventMatch, utcnow

from .httpfakes import Answer, Call
from .procs import wait_until
from .stack import EVENT, Stack, fresh_event, rows_of, settled


def api(stack: Stack, user: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, stack.api.url + path, headers={'Http-Remote-User': user}, timeout=10, **kwargs)


def secret_of(stack: Stack, user: str, sub: dict) -> str:
    resp = api(stack, user, 'GET', f'/eventmatch/{sub["uuid"]}/secret')
    assert resp.status_code == 200, resp.text
    return resp.json()['key']


def verify(secret: str, call: Call) -> None:
    """Verify a delivery as a subscriber would (raises WebhookVerificationError)."""
    Webhook(secret).verify(call.body, call.headers, json_parse=False)


def delivered(stack: Stack, sub: dict, path: str, count: int = 1) -> list[Call]:
    settled(sub, count)
    return stack.target.calls(path)


def headers_of(call: Call) -> dict:
    return {name.lower(): value for name, value in call.headers.items()}


def test_every_delivery_is_signed_and_tampering_fails(stack, case):
    user, path = case
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    stack.post_event()
    (call,) = delivered(stack, sub, path)
    secret = secret_of(stack, user, sub)
    verify(secret, call)
    headers = headers_of(call)
    assert headers['webhook-id'] == str(rows_of(sub)[0].uuid)
    assert abs(int(headers['webhook-timestamp']) - time.time()) < 60
    assert headers['webhook-signature'].startswith('v1,') and ' ' not in headers['webhook-signature']
    with pytest.raises(WebhookVerificationError):
        verify(secret, Call(call.path, call.headers, call.body.replace(b'"data"', b'"Data"'), call.at))
    older = {**call.headers, 'webhook-timestamp': str(int(headers['webhook-timestamp']) - 1)}
    with pytest.raises(WebhookVerificationError):
        verify(secret, Call(call.path, older, call.body, call.at))
    other = stack.subscribe(user, target_url=stack.target.url + path + '/other')
    with pytest.raises(WebhookVerificationError):
        verify(secret_of(stack, user, other), call)


def test_a_retry_keeps_its_id_and_is_signed_afresh(stack, case):
    user, path = case
    stack.target.script(path, Answer(503), Answer(200))
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    stack.post_event()
    calls = wait_until(
        lambda: [c for c in stack.target.calls(path)] if len(stack.target.calls(path)) >= 2 else None,
        30,
        what='the retry',
    )
    assert len(calls) == 2
    secret = secret_of(stack, user, sub)
    for call in calls:
        verify(secret, call)
    assert len({headers_of(call)['webhook-id'] for call in calls}) == 1


def test_the_secret_is_the_owners_alone_and_never_shown(stack, case):
    user, _path = case
    given = 'whsec_' + base64.b64encode(b'k' * 32).decode()
    sub = stack.subscribe(user, target_url=stack.target.url + '/x', signing_secret=given)
    assert secret_of(stack, user, sub) == given
    assert api(stack, 'someone-else', 'GET', f'/eventmatch/{sub["uuid"]}/secret').status_code == 403
    assert api(stack, 'someone-else', 'POST', f'/eventmatch/{sub["uuid"]}/secret/rotate').status_code == 403
    shown = [
        sub,
        api(stack, user, 'GET', f'/eventmatch/{sub["uuid"]}').json(),
        *api(stack, user, 'GET', '/eventmatch').json(),
    ]
    for text in map(json.dumps, shown):
        assert 'whsec_' not in text and 'signing_secret' not in text
    assert api(stack, user, 'GET', f'/eventmatch/{sub["uuid"]}/other').status_code == 404


@pytest.mark.parametrize(
    'secret, words',
    [
        ('k' * 44, "'whsec_' followed by base64"),
        ('whsec_not*base64', 'not base64'),
        ('whsec_' + base64.b64encode(b'k' * 8).decode(), '24 to 64 bytes, not 8'),
        (42, 'signing_secret'),
    ],
)
def test_a_bad_secret_is_refused(stack, case, secret, words):
    user, _path = case
    resp = api(
        stack,
        user,
        'POST',
        '/eventmatch',
        json={'name': 'n', 'jsonpath': 'data', 'target_url': 'http://h/', 'signing_secret': secret},
    )
    assert resp.status_code == 400 and words in resp.json()['message'], resp.text
    sub = stack.subscribe(user, target_url='http://h/')
    rotated = api(stack, user, 'POST', f'/eventmatch/{sub["uuid"]}/secret/rotate', json={'key': secret})
    assert rotated.status_code == 400, rotated.text
    changed = api(
        stack, user, 'PUT', f'/eventmatch/{sub["uuid"]}', json={'signing_secret': secret_of(stack, user, sub)}
    )
    assert changed.status_code == 400 and 'secret/rotate' in changed.json()['message']


def test_after_a_rotation_both_secrets_sign_until_the_grace_ends(stack, case):
    user, path = case
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    old = secret_of(stack, user, sub)
    resp = api(stack, user, 'POST', f'/eventmatch/{sub["uuid"]}/secret/rotate')
    assert resp.status_code == 200, resp.text
    new = resp.json()['key']
    assert new != old and secret_of(stack, user, sub) == new
    stack.post_event()
    (call,) = delivered(stack, sub, path)
    assert len(headers_of(call)['webhook-signature'].split(' ')) == 2
    verify(old, call)
    verify(new, call)

    # The grace period (24 h by default) ends: only the new secret signs.
    past = utcnow() - timedelta(seconds=1)
    EventMatch.update(previous_secret_until=past, updated=utcnow()).where(
        EventMatch.uuid == uuid.UUID(sub['uuid'])
    ).execute()
    stack.post_event()
    second = delivered(stack, sub, path, 2)[1]
    verify(new, second)
    with pytest.raises(WebhookVerificationError):
        verify(old, second)


def test_rotating_to_a_given_secret(stack, case):
    user, path = case
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    given = 'whsec_' + base64.b64encode(bytes(range(40))).decode()
    resp = api(stack, user, 'POST', f'/eventmatch/{sub["uuid"]}/secret/rotate', json={'key': given})
    assert resp.status_code == 200 and resp.json() == {'key': given}
    stack.post_event()
    verify(given, delivered(stack, sub, path)[0])


def post_v1(stack: Stack, **attributes) -> dict:
    event = {
        'specversion': '1.0',
        'id': uuid.uuid4().hex,
        'source': '/pacifica/metadata/ingest',
        'type': 'org.pacifica.metadata.ingest',
        'datacontenttype': 'application/json',
        'data': EVENT['data'],
        **attributes,
    }
    resp = requests.post(
        stack.api.url + '/receive',
        data=json.dumps(event),
        headers={'Content-Type': 'application/cloudevents+json'},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return event


def test_a_1_0_event_is_delivered_structured_with_extensions_as_attributes(stack, case):
    user, path = case
    sub = stack.subscribe(
        user,
        jsonpath='$[?(@.type = "org.pacifica.metadata.ingest")]',
        target_url=stack.target.url + path,
        extensions={'comExampleExtension': 'mine', 'added': 1},
    )
    event = post_v1(stack, subject='s1')
    (call,) = delivered(stack, sub, path)
    verify(secret_of(stack, user, sub), call)
    assert headers_of(call)['content-type'] == 'application/cloudevents+json'
    assert call.json() == {**event, 'comexampleextension': 'mine', 'added': 1}


def test_binary_mode_carries_attributes_in_headers_and_data_as_the_body(stack, case):
    user, path = case
    sub = stack.subscribe(user, target_url=stack.target.url + path, delivery_mode='binary', extensions={'added': True})
    assert sub['delivery_mode'] == 'binary'
    event = post_v1(stack, subject='café 100%')
    (call,) = delivered(stack, sub, path)
    verify(secret_of(stack, user, sub), call)
    headers = headers_of(call)
    attributes = {name[3:]: unquote(value) for name, value in headers.items() if name.startswith('ce-')}
    assert attributes == {
        'specversion': '1.0',
        'id': event['id'],
        'source': event['source'],
        'type': event['type'],
        'subject': 'café 100%',
        'added': 'true',
    }
    assert headers['content-type'] == 'application/json'
    assert call.json() == event['data']


def test_binary_mode_maps_a_0_1_event(stack, case):
    user, path = case
    sub = stack.subscribe(user, target_url=stack.target.url + path, delivery_mode='binary')
    event = fresh_event()
    stack.post_event(event)
    (call,) = delivered(stack, sub, path)
    verify(secret_of(stack, user, sub), call)
    headers = headers_of(call)
    assert (headers['ce-specversion'], headers['ce-id'], headers['ce-type'], headers['ce-source']) == (
        '1.0',
        event['eventID'],
        event['eventType'],
        event['source'],
    )
    assert unquote(headers['ce-time']) == event['eventTime']
    assert call.json() == event['data']


def test_binary_data_reaches_a_binary_target_byte_for_byte(stack, case):
    user, path = case
    # Data of a non-JSON media type is data_base64 in the structured form that jsonpaths see.
    sub = stack.subscribe(user, jsonpath='$.data_base64', target_url=stack.target.url + path, delivery_mode='binary')
    text = 'plain text, é and ü\n'.encode()
    resp = requests.post(
        stack.api.url + '/receive',
        data=text,
        headers={
            'ce-specversion': '1.0',
            'ce-id': uuid.uuid4().hex,
            'ce-source': '/s',
            'ce-type': 't',
            'Content-Type': 'text/plain; charset=utf-8',
        },
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    (call,) = delivered(stack, sub, path)
    verify(secret_of(stack, user, sub), call)
    assert call.body == text and headers_of(call)['content-type'] == 'text/plain; charset=utf-8'


def test_the_documented_five_lines_verify_a_delivery(stack, case):
    """docs/delivery.md shows a subscriber verifying a delivery: those lines, run on a real one."""
    page = (Path(__file__).resolve().parent.parent / 'docs' / 'delivery.md').read_text(encoding='utf-8')
    code = page.split('### Signatures', 1)[1].split('```python\n', 1)[1].split('```', 1)[0]
    assert len(code.strip().splitlines()) == 5
    user, path = case
    sub = stack.subscribe(user, target_url=stack.target.url + path)
    event = fresh_event()
    stack.post_event(event)
    (call,) = delivered(stack, sub, path)
    secret = secret_of(stack, user, sub)
    namespace: dict = {'body': call.body, 'headers': call.headers}
    exec(code.replace("'whsec_...'", repr(secret)), namespace)
    assert namespace['event'] == event
    with pytest.raises(WebhookVerificationError):
        exec(code.replace("'whsec_...'", repr(secret)), {'body': call.body + b' ', 'headers': call.headers})
