"""Fuzzing both endpoints of a real server: whatever a client sends, the service holds.

Hypothesis throws random bodies, headers, methods and paths at ``pacifica-notifications``
(CherryPy's own server, no worker) and checks what every client relies on: never a 5xx,
every answer is strict JSON and every error names its ``status`` and ``message``, an
accepted event or subscription is stored exactly as sent, a refused one not at all.
Examples are derandomized, so every run on a given database sends the same requests.

The requests that once broke it are kept as plain examples (``FOUND``).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import uuid
from datetime import datetime
from urllib.parse import quote

import pytest
import requests
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pacifica.notifications.intake import event_id
from pacifica.notifications.jsonpath import normalize
from pacifica.notifications.orm import EventLog, EventMatch, mask_auth

from .conftest import served_api

#: The server's ``MAX_REQUEST_BYTES``: small, so oversized bodies cost little.
LIMIT = 65536
DB = os.environ.get('TEST_PEEWEE_URL', 'sqlite:').split(':', 1)[0]
NOWHERE = '00000000-0000-0000-0000-000000000000'
OWN = '/<own>'  # path placeholder: a subscription the caller has just created
VALID = {'name': 'seed', 'jsonpath': 'data', 'target_url': 'http://www.example.com/receive'}

#: Modest and repeatable: 3 to 5 s a test; derandomized, and no example database to replay.
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None)


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """A synced database and one CherryPy server in front of it; yields the base URL."""
    with served_api(tmp_path_factory.mktemp('fuzz'), MAX_REQUEST_BYTES=str(LIMIT)) as url:
        yield url


def _reject_constant(name: str):
    raise ValueError(f'{name} is not JSON')


def strict_loads(raw: bytes | str):
    """Parse JSON as the RFC has it: UTF-8, no NaN or Infinity."""
    return json.loads(raw.decode('utf-8') if isinstance(raw, bytes) else raw, parse_constant=_reject_constant)


def parsed(raw: bytes):
    """What the server reads from a JSON body, or None when it is not JSON."""
    try:
        return strict_loads(raw)
    except (ValueError, RecursionError):
        return None


def depth(value) -> int:
    """Levels of objects and arrays (``{"a": []}`` is 2)."""
    level, layer = 0, [value]
    while any(isinstance(node, (dict, list)) for node in layer):
        level += 1
        layer = [
            kid
            for node in layer
            if isinstance(node, (dict, list))
            for kid in (node.values() if isinstance(node, dict) else node)
        ]
    return level


def strings(value):
    """Every key and string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def numbers(value):
    """Every float inside a JSON value."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, (dict, list)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from numbers(item)


def check(resp: requests.Response):
    """Never a 5xx; always a strict JSON body; an error names its status and says why."""
    assert resp.status_code < 500, f'{resp.status_code} {resp.text}'
    assert resp.headers['Content-Type'].startswith('application/json'), resp.headers
    body = strict_loads(resp.content)
    if resp.status_code >= 400:
        assert body['status'].startswith(str(resp.status_code)) and body['message'], body
    return body


#: CloudEvents 1.0, modelled here apart from the service's code: attributes that must be there,
#: those that must be non-empty strings when there, and the members that are no extension.
V1_REQUIRED = ('id', 'source', 'specversion', 'type')
V1_STRINGS = ('id', 'source', 'type', 'subject', 'dataschema', 'datacontenttype', 'time')
V1_NOT_EXTENSIONS = {*V1_STRINGS, 'specversion', 'data', 'data_base64'}
TIMESTAMP = re.compile(
    r'([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-]([0-9]{2}):([0-9]{2}))'
)
BASE64 = re.compile(r'(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?')


def rfc3339(text: str) -> bool:
    """RFC 3339's date-time: a real date and time (a leap second allowed), an offset of at most 23:59."""
    found = TIMESTAMP.fullmatch(text)
    if not found:
        return False
    year, month, day, hour, minute, second = (int(part) for part in found.group(1, 2, 3, 4, 5, 6))
    try:
        datetime(year, month, day, hour, minute, min(second, 59) if second == 60 else second)
    except ValueError:
        return False
    return found.group(9) is None or (int(found.group(9)) <= 23 and int(found.group(10)) <= 59)


def attribute_value(value) -> bool:
    """What an extension attribute may hold: a string, a boolean or a signed 32-bit integer."""
    return isinstance(value, (str, bool)) or (isinstance(value, int) and -(2**31) <= value < 2**31)


def valid_v1(body: dict) -> bool:
    """Whether a structured event is valid CloudEvents 1.0 (a member that is null is absent)."""
    present = {name: value for name, value in body.items() if value is not None}
    if any(name not in present for name in V1_REQUIRED) or present['specversion'] != '1.0':
        return False
    if any(name in present and not (isinstance(present[name], str) and present[name]) for name in V1_STRINGS):
        return False
    if 'time' in present and not rfc3339(present['time']):
        return False
    if 'data' in body and 'data_base64' in body:  # both members there, even one null: which is the data?
        return False
    if 'data_base64' in present and not (
        isinstance(present['data_base64'], str) and BASE64.fullmatch(present['data_base64'])
    ):
        return False
    return all(
        re.fullmatch('[a-z0-9]+', name) and attribute_value(value)
        for name, value in present.items()
        if name not in V1_NOT_EXTENSIONS
    )


def expected_receive_status(raw: bytes, content_type: bytes | None) -> int:
    """What docs/rest-api.md promises for a body (no ce- headers): 415, 413, 400 or 200, in that order.

    ``application/json`` takes any object, ``application/cloudevents+json`` one that names its
    version; either way an object with ``specversion`` must be a valid 1.0 event.
    """
    media = (content_type or b'').decode('latin-1').split(';', 1)[0].strip().lower()
    if media not in ('application/json', 'application/cloudevents+json'):
        return 415
    if len(raw) > LIMIT:
        return 413
    body = parsed(raw)
    if not isinstance(body, dict) or depth(body) > 64:
        return 400
    surrogate = any('\ud800' <= ch <= '\udfff' for text in strings(body) for ch in text)
    if surrogate or any(math.isinf(number) for number in numbers(body)):
        return 400
    if media == 'application/cloudevents+json' and 'specversion' not in body and 'cloudEventsVersion' not in body:
        return 400
    return 400 if 'specversion' in body and not valid_v1(body) else 200


def post_event(base: str, raw: bytes, content_type: bytes | None, headers: dict, chunked: bool) -> str:
    """POST /receive: the documented status; an accepted event stored as sent (or, if its source
    and id were seen before, found in the first copy), a refused one not stored."""
    headers = {**headers, **({} if content_type is None else {'Content-Type': content_type})}
    data = iter([part for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]) if part]) if chunked else raw
    before = EventLog.select().count()
    resp = requests.post(base + '/receive', data=data, headers=headers, timeout=30)
    answer = check(resp)
    assert resp.status_code == expected_receive_status(raw, content_type), resp.text
    if resp.status_code != 200:
        assert EventLog.select().count() == before
        return str(resp.status_code)
    sent, stored = strict_loads(raw), strict_loads(EventLog.get_by_id(uuid.UUID(answer['uuid'])).jsondata)
    if answer.get('duplicate'):
        assert EventLog.select().count() == before
        assert stored.get('source') == sent['source'] is not None
        assert event_id(stored) == event_id(sent) is not None
        return '200 duplicate'
    assert EventLog.select().count() == before + 1
    assert stored == sent
    return '200'


def expected_user(user: bytes | None) -> str | None:
    """The owner the server names for a header (HTTP headers are ISO-8859-1); None if refused."""
    name = (user or b'').decode('latin-1').strip()
    return None if len(name) > 255 or '\x00' in name else name or 'anonymous'


def assert_applied(sub: dict, sent: dict) -> None:
    """The subscription shows every field as sent (secrets masked, jsonpath maybe rooted)."""
    for key in ('name', 'target_url', 'extensions', 'disabled', 'error'):
        if key in sent:
            assert sub[key] == sent[key], key
    if 'jsonpath' in sent:
        assert sub['jsonpath'] in (sent['jsonpath'], normalize(sent['jsonpath']))
    if 'auth' in sent:
        assert sub['auth'] == mask_auth(sent['auth'])


def call_eventmatch(
    base: str,
    method: str,
    path: str,
    user: bytes | None,
    raw: bytes | None,
    content_type: bytes | None = b'application/json',
) -> int:
    """Any call on /eventmatch: a subscription is created only by a 200 POST, changed only by
    a 200 PUT or DELETE, always as asked, and its owner sees it as the answer showed it."""
    auth = {} if user is None else {'Http-Remote-User': user}
    own = None
    if path == OWN:
        seed = requests.post(base + '/eventmatch', json=VALID, headers=auth, timeout=30)
        own = check(seed) if seed.status_code == 200 else None
        assert own or (seed.status_code == 400 and expected_user(user) is None), seed.text
        path = f'/{own["uuid"] if own else NOWHERE}'
    headers = {**auth, **({} if content_type is None else {'Content-Type': content_type})}
    before = EventMatch.select().count()
    resp = requests.request(
        method, base + '/eventmatch' + path, data=raw, headers=headers, allow_redirects=False, timeout=30
    )
    answer = check(resp)
    created = method == 'POST' and resp.status_code == 200
    assert EventMatch.select().count() == before + created
    if own and not (resp.status_code == 200 and method in ('PUT', 'DELETE')):
        assert requests.get(base + '/eventmatch' + path, headers=auth, timeout=30).json() == own
    if resp.status_code != 200 or method == 'GET':
        return resp.status_code
    sent = {} if method == 'DELETE' else strict_loads(raw)
    assert answer['user'] == expected_user(user)
    assert_applied(answer, sent)
    if method != 'POST':
        assert answer['updated'] >= own['updated']
        assert {k: v for k, v in answer.items() if k not in {*sent, 'updated', 'deleted'}} == {
            k: v for k, v in own.items() if k not in {*sent, 'updated', 'deleted'}
        }
    shown = requests.get(f'{base}/eventmatch/{answer["uuid"]}', headers=auth, timeout=30)
    listed = check(requests.get(base + '/eventmatch', headers=auth, timeout=30))
    if method == 'DELETE':
        assert answer['deleted'] and shown.status_code == 403 and answer not in listed
    else:
        assert check(shown) == answer and answer in listed
    assert {sub['user'] for sub in listed} <= {answer['user']}
    return resp.status_code


# --- strategies -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
events = st.dictionaries(
    st.sampled_from(['id', 'eventID', 'source', 'specversion', 'cloudEventsVersion', 'type', 'data'])
    | st.text(max_size=8),
    st.sampled_from(['1', 'urn:a', 1]) | json_values,
    max_size=6,
)


def often(value, others: st.SearchStrategy) -> st.SearchStrategy:
    """``value`` three times in four, else one of ``others``."""
    return st.integers(0, 3).flatmap(lambda pick: st.just(value) if pick else others)


def usually(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """One of ``good`` three times in four, else one of ``bad``."""
    return st.integers(0, 3).flatmap(lambda pick: good if pick else bad)


#: 1.0 events, most of them valid, the others broken a way or two: so the 1.0 rules get tried.
v1_times = usually(
    st.builds(
        lambda moment, sep, zone: moment.isoformat(sep) + zone,
        st.datetimes(),
        st.sampled_from('Tt '),
        st.sampled_from(['Z', 'z', '+05:30', '-00:00', '+23:59']),
    ),
    st.sampled_from(
        [
            'yesterday',
            '2026-11-27T10:00:00',
            '2026-02-30T10:00:00Z',
            '2026-11-27T24:00:00Z',
            '1990-12-31T23:59:60Z',
            '2026-11-27T10:00:00+24:00',
            '2026-11-27T10:00:00,5Z',
            '',
            5,
        ]
    ),
)
v1_base64 = usually(
    st.binary(max_size=12).map(lambda raw: base64.b64encode(raw).decode()),
    st.sampled_from(['A', 'AAA', 'AA=A', '!!!!', 'AAAA\n', ' AAAA', '\u00e9', 5, None]),
)
v1_names = st.from_regex(r'[a-z0-9]{1,10}', fullmatch=True)
v1_values = st.text(max_size=12) | st.integers(-(2**31), 2**31 - 1) | st.booleans()
v1_breakage = st.dictionaries(
    v1_names
    | st.sampled_from(['specversion', 'id', 'type', 'time', 'data', 'data_base64', 'Foo', 'a_b', 'caf\u00e9', '']),
    v1_values | st.sampled_from([None, '', 2**31, -(2**31) - 1, 1.5, [1], {'a': 1}, '0.3']),
    min_size=1,
    max_size=2,
)
v1_events = st.builds(
    lambda attributes, data, extensions, broken: {**attributes, **data, **extensions, **broken},
    st.fixed_dictionaries(
        {
            'specversion': st.just('1.0'),
            'id': usually(st.uuids().map(str), st.text(min_size=1, max_size=12)),
            'source': st.sampled_from(['/pacifica/metadata/ingest', 'urn:a']),
            'type': st.text(min_size=1, max_size=12),
        },
        optional={
            'subject': st.text(min_size=1, max_size=12),
            'time': v1_times,
            'datacontenttype': st.sampled_from(['application/json', 'text/plain; charset=utf-8']),
            'dataschema': st.just('http://example.com/schema'),
        },
    ),
    st.one_of(
        st.just({}), st.fixed_dictionaries({'data': json_values}), st.fixed_dictionaries({'data_base64': v1_base64})
    ),
    st.dictionaries(v1_names, v1_values, max_size=3),
    often({}, v1_breakage),
)


def dump(value, ascii_only: bool, compact: bool) -> bytes:
    """JSON text, spelled several ways (a lone surrogate stays raw, so not UTF-8, unless escaped)."""
    text = json.dumps(value, ensure_ascii=ascii_only, separators=(',', ':') if compact else None)
    return text.encode('utf-8', 'surrogatepass')


def dumped(values) -> st.SearchStrategy[bytes]:
    return st.builds(dump, values, st.booleans(), st.booleans())


#: Characters of a header value or secret (lone surrogates are tried on purpose, elsewhere).
line_chars = st.characters(blacklist_categories=('Cs',), blacklist_characters='\r\n')
#: Header values requests will send: no CR/LF, no leading blank.
header_values = st.text(line_chars, max_size=40).map(lambda text: text.encode().lstrip(b' \t\x0b\x0c'))
odd_json = [
    b'',
    b' {} ',
    b'{"a": NaN}',
    b'{"a": -Infinity}',
    b'[Infinity]',
    b'{"a": "\\ud800"}',
    b'{"a": "\\udfff b"}',
    b'{"a": 1e400}',
    b'\xef\xbb\xbf{}',
    b'{"a":1,"a":2}',
    b'{"a": "\\u0000"}',
    b'{"a": "\xed\xa0\x80"}',
    b'{"id": 1, "source": "s"}',
    b'{"data": [1e308, -0.0, 1E-400]}',
]

receive_bodies = st.one_of(
    dumped(events),
    dumped(events),
    dumped(v1_events),
    dumped(v1_events),
    dumped(json_values),
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    st.binary(max_size=16).map(lambda b: b'{"a": "' + b + b'\xff"}'),
    st.sampled_from(odd_json),
    st.sampled_from(odd_json),
    (st.integers(1, 20000) | st.integers(60, 68)).map(lambda n: b'{"a":' + b'[' * n + b']' * n + b'}'),
    st.integers(LIMIT - 32, LIMIT + 4096).map(lambda n: b'{"pad":"' + b'x' * (n - 10) + b'"}'),
    st.integers(20000, 32000).map(lambda n: b'{"a":[' + b','.join([b'0'] * n) + b']}'),
)
content_types = st.one_of(
    st.sampled_from(
        [
            b'application/json',
            b'application/json; charset=utf-8',
            b'application/cloudevents+json',
            b'application/cloudevents+json; charset=UTF-8',
            b'Application/JSON ; charset="utf-8"',
        ]
    ),
    st.sampled_from(
        [
            None,
            b'',
            b'text/plain',
            b'application/x-www-form-urlencoded',
            b'application/jsonx',
            b'multipart/form-data; boundary=x',
            b'json',
            b';application/json',
        ]
    ),
    header_values,
)
#: Any header but those that frame the request (or that the tests set themselves).
header_names = st.sampled_from(
    [
        'Cookie',
        'Accept',
        'Accept-Charset',
        'Accept-Encoding',
        'Content-Encoding',
        'Range',
        'Authorization',
        'If-Modified-Since',
        'X-Forwarded-For',
        'Ce-Id',
        'Ce-Source',
    ]
) | st.text('abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&*+.^`|~', min_size=1, max_size=20).filter(
    lambda name: (
        name.lower()
        not in (
            'content-length',
            'transfer-encoding',
            'host',
            'connection',
            'expect',
            'te',
            'trailer',
            'upgrade',
            'keep-alive',
            'content-type',
            'http-remote-user',
            'ce-specversion',
        )
    )
)
extra_headers = st.dictionaries(header_names, header_values, max_size=4)

users = st.one_of(
    st.none(),
    st.sampled_from([b'', b'alice', b'ALICE', b'alice ', 'alic\u00e9'.encode(), b'a\x00b']),
    st.sampled_from([255, 256, 5000]).map(lambda n: b'x' * n),
    header_values,
)
jsonpaths = st.sampled_from(
    [
        'data',
        '$.data',
        '[0]',
        '$',
        '$.data[*][?(@.mimetype = "text/plain")]',
        '$..',
        'data[?(',
        '$[',
        '',
        ' ',
        '$.a\x00',
        '$["\\ud800"]',
        '\ud800',
    ]
) | st.text(max_size=20)
urls = st.sampled_from(
    [
        'http://www.example.com/receive',
        'https://h:8080/x?y=1#z',
        'http://[::1]:9/x',
        '/relative',
        'ftp://h/x',
        'http://',
        'http:///x',
        'http://[::1/x',
        'http://[abc]/',
        'http://h/\x00',
        'http://h/\u00e9',
        '\ud800',
    ]
) | st.text(max_size=20)
secrets = st.text(max_size=10) | st.sampled_from(['********', 'a\r\nX: y'])
auths = st.one_of(
    st.sampled_from([{}, {'type': 'basic'}, {'type': 'digest'}, {'basic': {'username': 'u', 'password': 'p'}}]),
    st.builds(lambda u, p: {'type': 'basic', 'basic': {'username': u, 'password': p}}, secrets, secrets),
    st.builds(
        lambda t, c: {'type': 'header', 'header': {'type': t, 'credentials': c}},
        st.sampled_from(['Bearer', 'Token', 'Bad Type', '']),
        secrets,
    ),
    json_values,
)
big_extensions = st.builds(
    lambda ch, n: {'pad': ch * n}, st.sampled_from(['x', '\u00e9', '\U0001f600']), st.integers(8000, 33000)
)
safe_secrets = st.text(line_chars, max_size=10)
valid_auths = st.one_of(
    st.just({}),
    st.builds(lambda u, p: {'type': 'basic', 'basic': {'username': u, 'password': p}}, safe_secrets, safe_secrets),
    st.builds(
        lambda t, c: {'type': 'header', 'header': {'type': t, 'credentials': c}},
        st.sampled_from(['Bearer', 'Token', 'X-1']),
        safe_secrets,
    ),
)
#: Extensions a subscription may add: names of ASCII letters and digits, none a 1.0 name whatever its
#: case, no two differing only in case; values a string, an int32 or a boolean.
RESERVED_NAMES = ('id', 'source', 'specversion', 'type', 'datacontenttype', 'dataschema', 'subject', 'time', 'data')
valid_extensions = st.lists(
    st.tuples(
        st.text('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', min_size=1, max_size=8).filter(
            lambda name: name.lower() not in RESERVED_NAMES
        ),
        st.text(max_size=20) | st.integers(-(2**31), 2**31 - 1) | st.booleans(),
    ),
    max_size=4,
    unique_by=lambda pair: pair[0].lower(),
).map(dict)
valid_subscriptions = st.fixed_dictionaries(
    {
        'name': st.text(min_size=1, max_size=255),
        'jsonpath': st.sampled_from(['data', '$.data', '$..source']),
        'target_url': st.sampled_from(['http://www.example.com/receive', 'https://h:8443/x?y=1']),
    },
    optional={
        'auth': valid_auths,
        'extensions': valid_extensions | big_extensions,
        'disabled': st.none(),
        'error': st.none(),
    },
)
random_subscriptions = st.fixed_dictionaries(
    {},
    optional={
        'name': st.text(max_size=300) | json_values,
        'jsonpath': jsonpaths | json_values,
        'target_url': urls | json_values,
        'auth': auths,
        'extensions': json_values,
        'disabled': json_values,
        'error': json_values,
        'uuid': st.uuids().map(str) | json_values,
        'user': st.just('alice') | json_values,
        'colour': json_values,
    },
)
subscription_bodies = st.one_of(
    dumped(valid_subscriptions),
    dumped(valid_subscriptions),
    dumped(valid_subscriptions),
    dumped(random_subscriptions),
    dumped(json_values),
    st.binary(max_size=64),
    st.just(None),
    st.sampled_from(
        [
            b'{"name": "n", "jsonpath": "data", "target_url": "http://h/", "extensions": {"a": 1e400}}',
            b'{"name": "\\ud800", "jsonpath": "data", "target_url": "http://h/"}',
        ]
    ),
)
paths = st.one_of(
    st.sampled_from(
        [
            '',
            '/',
            OWN,
            '/not-a-uuid',
            '/%00',
            '/%ff',
            f'/{{{NOWHERE}}}',
            '/' + '1' * 32,
            f'/urn:uuid:{NOWHERE}',
            '/a/b',
            f'?event_uuid={NOWHERE}',
            '/%2F',
        ]
    ),
    st.uuids().map(lambda u: f'/{u}'),
    st.text(min_size=1, max_size=40).filter(lambda s: s.strip('.')).map(lambda s: '/' + quote(s, safe='')),
)
#: Any method on any path; often a create, or a call on one's own subscription.
calls = st.one_of(
    st.tuples(st.just('POST'), st.sampled_from(['', '/'])),
    st.tuples(st.sampled_from(['GET', 'PUT', 'PUT', 'DELETE']), st.just(OWN)),
    st.tuples(st.sampled_from(['GET', 'POST', 'PUT', 'DELETE']), paths),
)


# --- the fuzz tests ---------------------------------------------------------------------------


@FUZZ
@given(
    raw=receive_bodies,
    content_type=often(b'application/json', content_types) | st.just(b'application/cloudevents+json'),
    headers=extra_headers,
    chunked=st.booleans(),
)
def test_fuzz_receive(server, raw, content_type, headers, chunked):
    """Producers send anything: only JSON objects (valid 1.0 events, if they say 1.0) are kept, exactly as sent."""
    event(f'status {post_event(server, raw, content_type, headers, chunked)}')


@FUZZ
@given(call=calls, user=users, raw=subscription_bodies, content_type=often(b'application/json', content_types))
def test_fuzz_eventmatch(server, call, user, raw, content_type):
    """Users send anything: subscriptions change only as asked, and only for their owner."""
    method, path = call
    event(f'{method} {call_eventmatch(server, method, path, user, raw, content_type)}')


# --- the bugs the fuzzer found, kept as examples ---------------------------------------------

SUB = json.dumps(VALID)[:-1]  # a valid body without its closing brace, to add one field
FOUND = [
    pytest.param('POST', '/receive', None, b'{"a": "\\ud800"}', 400, id='receive-lone-surrogate'),
    pytest.param(
        'POST',
        '',
        None,
        b'{"name": "\\ud800", "jsonpath": "data", "target_url": "http://h/"}',
        400,
        id='name-lone-surrogate',
    ),
    pytest.param('POST', '/receive', None, b'{"a": 1e400}', 400, id='receive-1e400'),
    pytest.param('POST', '', None, (SUB + ', "extensions": {"a": 1e400}}').encode(), 400, id='extensions-1e400'),
    pytest.param('GET', '?foo=bar', None, None, 404, id='get-unknown-query'),
    pytest.param('POST', f'/{NOWHERE}', None, SUB.encode() + b'}', 404, id='post-with-uuid'),
    pytest.param('PUT', '', None, b'{}', 404, id='put-without-uuid'),
    pytest.param(
        'POST', '', None, json.dumps({**VALID, 'target_url': 'http://[::1/x'}).encode(), 400, id='target-url-bracket'
    ),
    pytest.param('POST', '', None, json.dumps({**VALID, 'name': 'a\x00b'}).encode(), 400, id='name-nul'),
    pytest.param('GET', '', b'a\x00b', None, 400, id='user-nul'),
    pytest.param(
        'POST', '/receive', None, b'{"a":[' + b','.join([b'0'] * 30000) + b']}', 200, id='receive-over-64k-stored'
    ),
    pytest.param(
        'POST',
        '',
        None,
        json.dumps({**VALID, 'extensions': {'a': '\u00e9' * 20000}}, ensure_ascii=False).encode(),
        200,
        id='extensions-over-64k-stored',
    ),
]


@pytest.mark.parametrize('method, path, user, raw, status', FOUND)
def test_found_by_fuzzing(server, method, path, user, raw, status):
    """Requests that once gave a 500 or stored what is not JSON: now the documented answer."""
    if path == '/receive':
        assert post_event(server, raw, b'application/json', {}, False).startswith(str(status))
    else:
        assert call_eventmatch(server, method, path, user or f'bug-{uuid.uuid4().hex[:8]}'.encode(), raw) == status


def test_list_shows_only_the_callers_own(server):
    """'alice', 'ALICE' and 'álice' are three users: none lists another's subscriptions."""
    alice = f'alice-{uuid.uuid4().hex[:6]}'.encode()
    names = [alice, alice.upper(), b'\xe1' + alice[1:]]  # headers are ISO-8859-1: b'\xe1' is 'á'
    for name in names:
        check(requests.post(server + '/eventmatch', json=VALID, headers={'Http-Remote-User': name}, timeout=30))
    for name in names:
        listed = check(requests.get(server + '/eventmatch', headers={'Http-Remote-User': name}, timeout=30))
        assert [sub['user'] for sub in listed] == [name.decode('latin-1')]
