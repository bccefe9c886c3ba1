"""The REST API over real HTTP: every example of the seed's Example Usage, and every error.

The whole module runs twice: against ``pacifica-notifications`` (CherryPy's own
server) and against the WSGI module under uWSGI.
"""

from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from pacifica.notifications.orm import SECRET_MASK, EventLog, EventMatch

from .conftest import (
    FIXTURES,
    served_api,
)
from .procs import require_uwsgi

SEED_CREATE = {'name': 'My Event Match', 'jsonpath': 'data', 'target_url': 'http://www.example.com/receive'}
SEED_AUTH = {'type': 'basic', 'basic': {'username': 'myusername', 'password': 'password'}}
FIELDS = {
    'user',
    'updated',
    'uuid',
    'deleted',
    'version',
    'jsonpath',
    'disabled',
    'created',
    'name',
    'extensions',
    'delivery_mode',
    'auth',
    'target_url',
    'error',
}


@pytest.fixture(scope='module', params=['cherrypy', 'uwsgi'])
def api(request, tmp_path_factory):
    """A synced database and a real server in front of it; yields the base URL."""
    if request.param == 'uwsgi':
        require_uwsgi()
    with served_api(tmp_path_factory.mktemp(request.param), uwsgi=request.param == 'uwsgi') as url:
        yield url


class Client:
    """One remote user talking to the API."""

    def __init__(self, base: str, user: str | None):
        self.base = base
        self.headers = {'Http-Remote-User': user} if user else {}

    def call(
        self,
        method: str,
        path: str = '/eventmatch',
        body=None,
        raw: bytes | None = None,
        content_type: str = 'application/json',
    ) -> requests.Response:
        headers = dict(self.headers)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers['Content-Type'] = content_type
        return requests.request(method, self.base + path, data=data, headers=headers, timeout=30)

    def create(self, **fields) -> dict:
        resp = self.call('POST', body={**SEED_CREATE, **fields})
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture
def alice(api):
    return Client(api, f'alice-{uuid.uuid4().hex[:8]}')


@pytest.fixture
def bob(api):
    return Client(api, f'bob-{uuid.uuid4().hex[:8]}')


def assert_json_error(resp: requests.Response, status: int, text: str = '') -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers['Content-Type'].startswith('application/json')
    body = resp.json()
    assert body['status'].startswith(str(status)) and 'traceback' not in body
    assert text in body['message'], body['message']


def test_create_seed_example(alice):
    resp = alice.call('POST', body=SEED_CREATE)
    assert resp.status_code == 200 and resp.headers['Content-Type'].startswith('application/json')
    sub = resp.json()
    assert set(sub) == FIELDS
    assert {k: sub[k] for k in ('user', 'name', 'jsonpath', 'target_url', 'version')} == {
        'user': alice.headers['Http-Remote-User'],
        'name': 'My Event Match',
        'jsonpath': 'data',
        'target_url': 'http://www.example.com/receive',
        'version': 'v0.1',
    }
    assert (sub['deleted'], sub['disabled'], sub['error'], sub['auth'], sub['extensions']) == (None, None, None, {}, {})
    assert sub['created'] == sub['updated']
    datetime.fromisoformat(sub['created'])
    uuid.UUID(sub['uuid'])


def test_create_with_auth_masks_the_secret(alice):
    sub = alice.create(auth=SEED_AUTH)
    assert sub['auth'] == {'type': 'basic', 'basic': {'username': 'myusername', 'password': SECRET_MASK}}
    assert 'password"' not in alice.call('GET', f'/eventmatch/{sub["uuid"]}').text.replace('"password": "********"', '')
    stored = EventMatch.get_by_id(uuid.UUID(sub['uuid']))
    assert stored.auth_dict() == SEED_AUTH


def test_header_auth_masked(alice):
    auth = {'type': 'header', 'header': {'type': 'Bearer', 'credentials': 's3cret'}}
    sub = alice.create(auth=auth)
    assert sub['auth'] == {'type': 'header', 'header': {'type': 'Bearer', 'credentials': SECRET_MASK}}
    assert 's3cret' not in json.dumps(alice.call('GET').json())


def test_get_one_and_list(alice):
    assert alice.call('GET').json() == []
    first, second = alice.create(name='one'), alice.create(name='two')
    assert alice.call('GET', f'/eventmatch/{first["uuid"]}').json() == first
    assert alice.call('GET').json() == [first, second]


def test_update_seed_example(alice):
    sub = alice.create()
    resp = alice.call('PUT', f'/eventmatch/{sub["uuid"]}', {'target_url': 'http://api.example.com/receive'})
    assert resp.status_code == 200, resp.text
    new = resp.json()
    assert new['target_url'] == 'http://api.example.com/receive'
    assert new['updated'] > sub['updated']
    assert {k: v for k, v in new.items() if k not in ('target_url', 'updated')} == {
        k: v for k, v in sub.items() if k not in ('target_url', 'updated')
    }
    assert alice.call('GET', f'/eventmatch/{sub["uuid"]}').json() == new


def test_update_every_editable_field(alice):
    sub = alice.create()
    change = {
        'name': 'renamed',
        'jsonpath': '$.data[*][?(@.mimetype = "text/plain")]',
        'auth': {'type': 'header', 'header': {'type': 'Token', 'credentials': 'abc'}},
        'extensions': {'comExampleExtension': 'mine'},
    }
    new = alice.call('PUT', f'/eventmatch/{sub["uuid"]}', change).json()
    assert (new['name'], new['jsonpath'], new['extensions']) == ('renamed', change['jsonpath'], change['extensions'])
    assert new['auth']['header'] == {'type': 'Token', 'credentials': SECRET_MASK}


def test_put_back_what_get_returned_keeps_the_secret(alice):
    sub = alice.create(auth=SEED_AUTH)
    resp = alice.call('PUT', f'/eventmatch/{sub["uuid"]}', {**sub, 'name': 'again'})
    assert resp.status_code == 200, resp.text
    assert EventMatch.get_by_id(uuid.UUID(sub['uuid'])).auth_dict() == SEED_AUTH


def test_reenable_a_disabled_subscription(alice):
    sub = alice.create()
    EventMatch.update(disabled=datetime(2020, 1, 1), error='target answered 500').where(
        EventMatch.uuid == uuid.UUID(sub['uuid'])
    ).execute()
    shown = alice.call('GET', f'/eventmatch/{sub["uuid"]}').json()
    assert (shown['disabled'], shown['error']) == ('2020-01-01T00:00:00', 'target answered 500')
    new = alice.call('PUT', f'/eventmatch/{sub["uuid"]}', {'disabled': None, 'error': None}).json()
    assert (new['disabled'], new['error']) == (None, None)


def test_delete_seed_example(alice):
    sub = alice.create()
    resp = alice.call('DELETE', f'/eventmatch/{sub["uuid"]}')
    assert resp.status_code == 200
    assert resp.json()['deleted'] is not None
    assert_json_error(alice.call('GET', f'/eventmatch/{sub["uuid"]}'), 403)
    assert_json_error(alice.call('PUT', f'/eventmatch/{sub["uuid"]}', {'name': 'x'}), 403)
    assert_json_error(alice.call('DELETE', f'/eventmatch/{sub["uuid"]}'), 403)
    assert alice.call('GET').json() == []
    assert EventMatch.get_by_id(uuid.UUID(sub['uuid'])).deleted is not None


def test_users_cannot_see_or_touch_each_other(alice, bob):
    mine = alice.create()
    path = f'/eventmatch/{mine["uuid"]}'
    missing = f'/eventmatch/{uuid.uuid4()}'
    for method, body in (('GET', None), ('PUT', {'name': 'stolen'}), ('DELETE', None)):
        other, absent = bob.call(method, path, body), bob.call(method, missing, body)
        assert_json_error(other, 403)
        assert other.json()['message'].replace(mine['uuid'], 'X') == absent.json()['message'].replace(
            missing.rsplit('/', 1)[1], 'X'
        )
    assert bob.call('GET').json() == []
    assert alice.call('GET', path).json() == mine


def test_put_cannot_hand_over_a_subscription(alice, bob):
    sub = alice.create()
    resp = alice.call('PUT', f'/eventmatch/{sub["uuid"]}', {'user': bob.headers['Http-Remote-User']})
    assert_json_error(resp, 400, 'read-only field(s) cannot be set: user')
    assert alice.call('GET', f'/eventmatch/{sub["uuid"]}').json() == sub


def test_no_user_header_means_default_user(api):
    sub = Client(api, None).create()
    assert sub['user'] == 'anonymous'


BAD_CREATES = [
    ({'jsonpath': 'data', 'target_url': 'http://h/'}, 'missing required field(s): name'),
    ({}, 'missing required field(s): name, jsonpath, target_url'),
    ({**SEED_CREATE, 'name': 7}, "name: 7 is not of type 'string'"),
    ({**SEED_CREATE, 'name': ''}, 'name:'),
    ({**SEED_CREATE, 'extensions': []}, "extensions: [] is not of type 'object'"),
    ({**SEED_CREATE, 'colour': 'red'}, "'colour' was unexpected"),
    ({**SEED_CREATE, 'jsonpath': '$..'}, "jsonpath: invalid jsonpath '$..'"),
    ({**SEED_CREATE, 'jsonpath': 'data[?('}, 'jsonpath: invalid jsonpath'),
    ({**SEED_CREATE, 'target_url': '/relative'}, 'is not an absolute http(s) URL'),
    ({**SEED_CREATE, 'target_url': 'ftp://h/x'}, 'is not an absolute http(s) URL'),
    ({**SEED_CREATE, 'auth': {'type': 'basic'}}, "auth: 'basic' is a required property"),
    ({**SEED_CREATE, 'auth': {'type': 'digest'}}, 'auth.type:'),
    ({**SEED_CREATE, 'auth': {'basic': {'username': 'u', 'password': 'p'}}}, "auth: needs a 'type'"),
    ({**SEED_CREATE, 'auth': {'type': 'basic', 'basic': {'username': 'u'}}}, "'password' is a required property"),
    (
        {**SEED_CREATE, 'auth': {'type': 'header', 'header': {'type': 'Bearer', 'credentials': 'a\r\nX: y'}}},
        'contains characters not allowed',
    ),
    ({**SEED_CREATE, 'uuid': str(uuid.uuid4())}, 'read-only field(s) cannot be set: uuid'),
    ({**SEED_CREATE, 'user': 'someone', 'version': 'v9'}, 'read-only field(s) cannot be set: user, version'),
    ({**SEED_CREATE, 'disabled': '2020-01-01T00:00:00'}, 'disabled: can only be set to null'),
]


@pytest.mark.parametrize('body, message', BAD_CREATES)
def test_create_rejects(alice, body, message):
    assert_json_error(alice.call('POST', body=body), 400, message)
    assert alice.call('GET').json() == []


@pytest.mark.parametrize(
    'raw, content_type, status, message',
    [
        (b'{"name": ', 'application/json', 400, 'body is not valid JSON'),
        (b'[1, 2]', 'application/json', 400, 'body must be a JSON object, not list'),
        (b'"text"', 'application/json', 400, 'body must be a JSON object, not str'),
        (b'{"a": NaN}', 'application/json', 400, 'NaN is not valid JSON'),
        (b'{"name": "\xff"}', 'application/json', 400, 'body is not valid UTF-8'),
        (b'name=x', 'application/x-www-form-urlencoded', 415, 'Content-Type must be application/json'),
    ],
)
def test_bodies_that_are_not_json_objects(alice, raw, content_type, status, message):
    for path in ('/eventmatch', '/receive'):
        assert_json_error(alice.call('POST', path, raw=raw, content_type=content_type), status, message)


def test_put_rejects_and_changes_nothing(alice):
    sub = alice.create()
    path = f'/eventmatch/{sub["uuid"]}'
    assert_json_error(alice.call('PUT', path, {'jsonpath': '$['}), 400, 'jsonpath')
    assert_json_error(alice.call('PUT', path, {'created': '2001-01-01T00:00:00'}), 400, 'created')
    assert_json_error(alice.call('PUT', path, raw=b'[]'), 400, 'JSON object')
    assert alice.call('GET', path).json() == sub


def test_malformed_uuid_in_path(alice):
    for method in ('GET', 'PUT', 'DELETE'):
        assert_json_error(alice.call(method, '/eventmatch/not-a-uuid', {}), 400, "not a UUID: 'not-a-uuid'")


def test_oversized_body_is_413(alice):
    huge = {**SEED_CREATE, 'extensions': {'pad': 'x' * (1024 * 1024)}}
    for path in ('/eventmatch', '/receive'):
        assert_json_error(alice.call('POST', path, huge), 413)


def test_unknown_path_and_method_are_json(alice):
    assert_json_error(alice.call('GET', '/nowhere'), 404)
    assert_json_error(alice.call('GET', '/receive'), 405)
    assert_json_error(alice.call('PATCH', '/eventmatch', {}), 405)


def test_deeply_nested_body_is_400(alice):
    raw = b'{"a": ' + b'[' * 5000 + b']' * 5000 + b'}'
    assert_json_error(alice.call('POST', '/receive', raw=raw), 400, 'nests deeper')


def test_nesting_limit_is_exact(alice):
    """The root object and 62 lists nest 64 levels deep with the innermost value: accepted; one more is not."""

    def nested(lists: int) -> bytes:
        return b'{"id": "deep", "source": "nest", "a": ' + b'[' * lists + b'1' + b']' * lists + b'}'

    assert alice.call('POST', '/receive', raw=nested(62)).status_code == 200
    assert_json_error(alice.call('POST', '/receive', raw=nested(63)), 400, 'nests deeper')


@pytest.mark.parametrize('escape', [b'\\ud800', b'\\uDC00', b'\\uDbFf'])
def test_lone_surrogate_escapes_are_400_however_spelled(alice, escape):
    raw = b'{"id": "s", "source": "s", "a": ["' + escape + b'"]}'
    assert_json_error(alice.call('POST', '/receive', raw=raw), 400, 'surrogate')


@pytest.mark.parametrize(
    'content_type',
    [
        'application/json',
        'application/json; charset=utf-8',
        'application/cloudevents+json',
        'application/cloudevents+json; charset=UTF-8',
    ],
)
def test_receive_stores_the_event(alice, content_type):
    raw = (FIXTURES / 'metadata-ingest-event.json').read_bytes()
    resp = alice.call('POST', '/receive', raw=raw, content_type=content_type)
    assert resp.status_code == 200, resp.text
    stored = EventLog.get_by_id(uuid.UUID(resp.json()['uuid']))
    assert json.loads(stored.jsondata) == json.loads(raw)


def test_receive_logs_the_event_as_sent(alice):
    """The log keeps the producer's own text (its spacing and key order), not a re-encoding."""
    raw = b'{ "source" : "/s",\n  "eventID": "%s", "data": [1, 2.50, "\xc3\xa9"] }' % uuid.uuid4().hex.encode()
    resp = alice.call('POST', '/receive', raw=raw)
    assert resp.status_code == 200, resp.text
    assert EventLog.get_by_id(uuid.UUID(resp.json()['uuid'])).jsondata == raw.decode('utf-8')


def test_receive_keeps_unicode(alice):
    event = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))
    resp = alice.call('POST', '/receive', event)
    assert json.loads(EventLog.get_by_id(uuid.UUID(resp.json()['uuid'])).jsondata) == event


def test_rejected_events_are_not_stored(alice):
    before = EventLog.select().count()
    for raw in (b'', b'{', b'[]', b'null'):
        resp = alice.call('POST', '/receive', raw=raw)
        assert 400 <= resp.status_code < 500
    assert EventLog.select().count() == before


def post_event(client: Client, event: dict) -> dict:
    resp = client.call('POST', '/receive', event)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize(
    'id_field, version',
    [('eventID', {'cloudEventsVersion': '0.1'}), ('id', {'specversion': '1.0', 'type': 'org.example.test'})],
)
def test_an_event_posted_twice_is_stored_once(alice, id_field, version):
    event = {**version, id_field: uuid.uuid4().hex, 'source': '/pacifica/metadata/ingest', 'data': [1]}
    first = post_event(alice, event)
    again = post_event(alice, {**event, 'data': ['changed']})
    assert first == {'status': 'accepted', 'uuid': first['uuid'], 'duplicate': False}
    assert again == {'status': 'accepted', 'uuid': first['uuid'], 'duplicate': True}
    assert json.loads(EventLog.get_by_id(uuid.UUID(first['uuid'])).jsondata) == event


def test_concurrent_posts_are_each_stored_once(alice):
    """Many clients at once, every event sent twice: commits taken together still store each event once."""
    source = f'/concurrent/{uuid.uuid4().hex}'
    events = [
        {'specversion': '1.0', 'type': 't', 'id': str(number), 'source': source, 'data': [number]}
        for number in range(150)
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda event: post_event(alice, event), [event for event in events for _ in 'ab']))
    first, second = answers[0::2], answers[1::2]
    for one, other in zip(first, second):
        assert one['uuid'] == other['uuid']
        assert sorted([one['duplicate'], other['duplicate']]) == [False, True]
    stored = {str(row.uuid): json.loads(row.jsondata) for row in EventLog.select() if source in row.jsondata}
    assert stored == {answer['uuid']: event for answer, event in zip(first, events)}


def test_same_id_from_another_source_or_no_id_is_a_new_event(alice):
    ident = uuid.uuid4().hex
    answers = [
        post_event(alice, {'eventID': ident, 'source': '/a'}),
        post_event(alice, {'eventID': ident, 'source': '/b'}),
        post_event(alice, {'source': '/a', 'data': []}),
        post_event(alice, {'source': '/a', 'data': []}),
    ]
    assert not any(answer['duplicate'] for answer in answers)
    assert len({answer['uuid'] for answer in answers}) == 4


# --- CloudEvents 1.0: structured, binary and batched ---------------------------------------------

CE_STRUCTURED = 'application/cloudevents+json'
CE_BATCH = 'application/cloudevents-batch+json'


def v1_event(**attributes) -> dict:
    return {
        'specversion': '1.0',
        'id': uuid.uuid4().hex,
        'source': '/pacifica/metadata/ingest',
        'type': 'org.pacifica.metadata.ingest',
        'time': '2026-11-27T10:00:00Z',
        'datacontenttype': 'application/json',
        'data': [{'destinationTable': 'Files', 'mimetype': 'text/plain'}],
        **attributes,
    }


def post_binary(client: Client, headers: dict, body: bytes, content_type: str | None = 'application/json'):
    sent = {**client.headers, **headers, **({'Content-Type': content_type} if content_type else {})}
    return requests.post(client.base + '/receive', data=body, headers=sent, timeout=30)


def stored_event(answer: dict) -> dict:
    return json.loads(EventLog.get_by_id(uuid.UUID(answer['uuid'])).jsondata)


@pytest.mark.parametrize('content_type', [CE_STRUCTURED, 'application/json'])
def test_a_structured_1_0_event_is_stored_as_sent(alice, content_type):
    event = v1_event(subject='file 1', comexample='x', count=3, flag=True)
    raw = json.dumps(event, indent=1).encode()
    resp = alice.call('POST', '/receive', raw=raw, content_type=content_type)
    assert resp.status_code == 200, resp.text
    assert EventLog.get_by_id(uuid.UUID(resp.json()['uuid'])).jsondata == raw.decode()


@pytest.mark.parametrize('content_type', [CE_STRUCTURED, 'application/json'])
@pytest.mark.parametrize('attribute', ['id', 'source', 'type', 'specversion'])
def test_a_1_0_event_lacking_a_required_attribute_is_400_naming_it(alice, content_type, attribute):
    event = v1_event()
    del event[attribute]
    if attribute == 'specversion' and content_type == 'application/json':
        return  # without specversion, plain JSON is the seed's any-object event: accepted
    before = EventLog.select().count()
    resp = alice.call('POST', '/receive', event, content_type=content_type)
    assert_json_error(resp, 400, f"'{attribute}' is missing")
    assert EventLog.select().count() == before


@pytest.mark.parametrize(
    'change, words',
    [
        ({'specversion': '0.3'}, "specversion '0.3' is not supported"),
        ({'time': 'yesterday'}, 'RFC 3339'),
        ({'id': ''}, "'id' must be a non-empty string"),
        ({'Bad_Name': 'x'}, "'Bad_Name' is not a CloudEvents attribute name"),
        ({'data_base64': 'AAAA'}, "either 'data' or 'data_base64'"),
    ],
)
def test_an_invalid_1_0_event_is_400_saying_why(alice, change, words):
    assert_json_error(alice.call('POST', '/receive', v1_event(**change), content_type=CE_STRUCTURED), 400, words)


def test_cloudevents_media_type_needs_a_version_but_0_1_stays_accepted(alice):
    bare = {'id': uuid.uuid4().hex, 'source': '/s', 'type': 't'}
    assert_json_error(alice.call('POST', '/receive', bare, content_type=CE_STRUCTURED), 400, "'specversion' is missing")
    seed = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))
    resp = alice.call('POST', '/receive', {**seed, 'eventID': uuid.uuid4().hex}, content_type=CE_STRUCTURED)
    assert resp.status_code == 200, resp.text


def test_a_binary_event_is_stored_as_its_structured_form(alice):
    ident = uuid.uuid4().hex
    headers = {
        'ce-specversion': '1.0',
        'ce-id': ident,
        'ce-source': '/pacifica/metadata/ingest',
        'ce-type': 'org.pacifica.metadata.ingest',
        'ce-subject': 'caf%C3%A9 %25 done',
        'ce-time': '2026-11-27T10:00:00+01:00',
        'ce-comexample': 'yes',
    }
    resp = post_binary(alice, headers, b'{"files": [1, 2]}', 'application/json; charset=utf-8')
    assert resp.status_code == 200, resp.text
    assert stored_event(resp.json()) == {
        'specversion': '1.0',
        'id': ident,
        'source': '/pacifica/metadata/ingest',
        'type': 'org.pacifica.metadata.ingest',
        'subject': 'café % done',
        'time': '2026-11-27T10:00:00+01:00',
        'comexample': 'yes',
        'datacontenttype': 'application/json; charset=utf-8',
        'data': {'files': [1, 2]},
    }


def test_binary_data_of_another_media_type_is_kept_as_base64(alice):
    payload = bytes(range(256))
    headers = {'ce-specversion': '1.0', 'ce-id': uuid.uuid4().hex, 'ce-source': '/s', 'ce-type': 't'}
    resp = post_binary(alice, headers, payload, 'image/png')
    assert resp.status_code == 200, resp.text
    stored = stored_event(resp.json())
    assert stored['datacontenttype'] == 'image/png' and 'data' not in stored
    assert base64.b64decode(stored['data_base64']) == payload


@pytest.mark.parametrize(
    'headers, content_type, status, words',
    [
        ({'ce-id': '1', 'ce-source': '/s'}, 'application/json', 400, "'type' is missing"),
        ({'ce-id': '1', 'ce-source': '/s', 'ce-type': 't', 'ce-time': 'noon'}, 'application/json', 400, 'RFC 3339'),
        ({'ce-id': '1', 'ce-source': '/s', 'ce-type': 't'}, None, 400, 'needs a Content-Type'),
        ({'ce-id': '1', 'ce-source': '/s', 'ce-type': 't', 'ce-specversion': '2.0'}, 'text/plain', 400, "'2.0'"),
    ],
)
def test_an_invalid_binary_event_is_refused(alice, headers, content_type, status, words):
    before = EventLog.select().count()
    resp = post_binary(alice, {'ce-specversion': '1.0', **headers}, b'{}', content_type)
    assert_json_error(resp, status, words)
    assert EventLog.select().count() == before


def test_other_media_types_without_ce_headers_are_415(alice):
    assert_json_error(alice.call('POST', '/receive', raw=b'hello', content_type='text/plain'), 415, CE_BATCH)


def test_one_event_sent_structured_then_binary_is_stored_once(alice):
    event = v1_event()
    first = alice.call('POST', '/receive', event, content_type=CE_STRUCTURED).json()
    headers = {f'ce-{name}': event[name] for name in ('specversion', 'id', 'source', 'type', 'time')}
    again = post_binary(alice, headers, json.dumps(event['data']).encode())
    assert again.status_code == 200, again.text
    assert again.json() == {'status': 'accepted', 'uuid': first['uuid'], 'duplicate': True}


def test_a_batch_is_stored_whole_and_answered_in_order(alice):
    earlier = alice.call('POST', '/receive', v1_event(), content_type=CE_STRUCTURED).json()
    seen = stored_event(earlier)
    fresh = [v1_event(), v1_event()]
    batch = [fresh[0], seen, fresh[1], fresh[0]]
    resp = alice.call('POST', '/receive', batch, content_type=CE_BATCH)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer['status'] == 'accepted'
    items = answer['events']
    assert [item['duplicate'] for item in items] == [False, True, False, True]
    assert items[1]['uuid'] == earlier['uuid'] and items[3]['uuid'] == items[0]['uuid']
    assert [stored_event(items[0]), stored_event(items[2])] == fresh


@pytest.mark.parametrize(
    'members, words',
    [
        ([{}, {'specversion': '1.0'}], 'batch event 0: '),
        ([None], 'batch event 0: must be a JSON object'),
        (['ok', 'type-less'], "batch event 1: CloudEvents attribute 'type' is missing"),
    ],
)
def test_a_batch_with_one_bad_member_stores_nothing(alice, members, words):
    good = v1_event()
    batch = [
        good if member == 'ok' else ({**v1_event(), 'type': None} if member == 'type-less' else member)
        for member in members
    ]
    before = EventLog.select().count()
    assert_json_error(alice.call('POST', '/receive', batch, content_type=CE_BATCH), 400, words)
    assert EventLog.select().count() == before
    again = alice.call('POST', '/receive', good, content_type=CE_STRUCTURED).json()
    assert again['duplicate'] is False


def test_a_batch_must_be_an_array_and_may_be_empty(alice):
    assert_json_error(alice.call('POST', '/receive', v1_event(), content_type=CE_BATCH), 400, 'JSON array')
    resp = alice.call('POST', '/receive', [], content_type=CE_BATCH)
    assert resp.status_code == 200 and resp.json() == {'status': 'accepted', 'events': []}
