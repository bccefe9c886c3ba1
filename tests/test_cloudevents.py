"""cloudevents: what a valid 1.0 event is, subscriptions' extensions, and HTTP binary mode both ways.

Pure functions, no server: each test states what a producer or subscriber sees.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacifica.notifications import cloudevents
from pacifica.notifications.errors import ClientError
from pacifica.notifications.rest import parse_json

pytestmark = pytest.mark.fast

#: Repeatable and quick: the same examples every run.
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None)

EVENT = {
    'specversion': '1.0',
    'id': 'A234-1234-1234',
    'source': '/pacifica/metadata/ingest',
    'type': 'org.pacifica.metadata.ingest',
}
#: A binary-mode event's headers (lower case, as the intake hands them in), and the event they carry.
HEADERS = {'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': '/s', 'ce-type': 't'}
BINARY_EVENT = {'specversion': '1.0', 'id': '1', 'source': '/s', 'type': 't'}
#: Names 1.0 gives a meaning of its own: never an extension.
RESERVED = ('id', 'source', 'specversion', 'type', 'datacontenttype', 'dataschema', 'subject', 'time', 'data')


def event(**members) -> dict:
    return {**EVENT, **members}


def refused(words: str):
    """Expect a :class:`ClientError` whose message contains ``words``."""
    return pytest.raises(ClientError, match=re.escape(words))


def from_binary(headers: dict, content_type: str | None, body: bytes) -> dict:
    return cloudevents.from_binary(headers, content_type, body, parse_json)


# --- validate ------------------------------------------------------------------------------------


def test_a_minimal_and_a_full_event_are_valid():
    cloudevents.validate(EVENT)
    cloudevents.validate(
        event(
            subject='file 1',
            time='2026-11-27T10:00:00Z',
            dataschema='http://example.com/schema',
            datacontenttype='application/json',
            data={'files': [1, 2]},
            comexample='x',
            count=-(2**31),
            big=2**31 - 1,
            flag=False,
            ignored=None,
        )
    )


@pytest.mark.parametrize('name', ['id', 'source', 'specversion', 'type'])
@pytest.mark.parametrize('absent', ['deleted', 'null'])
def test_each_required_attribute_missing_is_named(name, absent):
    incomplete = event()
    if absent == 'deleted':
        del incomplete[name]
    else:
        incomplete[name] = None
    with refused(f'{name!r} is missing'):
        cloudevents.validate(incomplete)


@pytest.mark.parametrize('version', ['0.3', '1', '1.0.0', 1.0, ''])
def test_only_specversion_1_0_is_supported(version):
    with refused('is not supported'):
        cloudevents.validate(event(specversion=version))


@pytest.mark.parametrize('name', ['id', 'source', 'type', 'subject', 'dataschema', 'datacontenttype', 'time'])
@pytest.mark.parametrize('value', ['', 5, True, ['x']])
def test_string_attributes_must_be_non_empty_strings(name, value):
    with refused(f'{name!r} must be a non-empty string'):
        cloudevents.validate(event(**{name: value}))


@pytest.mark.parametrize(
    'time',
    [
        '2026-11-27T10:00:00Z',
        '2026-11-27t10:00:00z',
        '2026-11-27T10:00:00+05:30',
        '2026-11-27T10:00:00-00:00',
        '1996-12-19T16:39:57-08:00',
        '1985-04-12T23:20:50.52Z',
        '2026-11-27T10:00:00.123456789+01:00',
        '0001-01-01T00:00:00Z',
        '1990-12-31T23:59:60Z',  # RFC 3339's own leap-second example
    ],
)
def test_rfc_3339_times_are_accepted(time):
    cloudevents.validate(event(time=time))


@pytest.mark.parametrize(
    'time',
    [
        'yesterday',
        '2026-11-27',
        '2026-11-27T10:00:00',
        '2026-11-27T10:00Z',
        '2026-02-30T10:00:00Z',
        '2026-11-27T24:00:00Z',
        '2026-11-27T10:00:00+24:00',
        '2026-11-27T10:00:00.Z',
        '2026-11-27T10:00:00,5Z',
        '2026-11-27T10:00:00+0100',
        '٢٠٢٦-11-27T10:00:00Z',
        ' 2026-11-27T10:00:00Z',
    ],
)
def test_other_times_are_refused(time):
    with refused('RFC 3339'):
        cloudevents.validate(event(time=time))


@pytest.mark.parametrize(
    'time', ['2026-11-27T10:00:00+00:60', '2026-11-27T10:00:00-09:88', '2026-11-27T10:00:00+20:90']
)
def test_an_offset_of_60_minutes_or_more_is_refused(time):
    """RFC 3339's time-minute is 00-59, in an offset as in the time (Python's fromisoformat takes more)."""
    with refused('RFC 3339'):
        cloudevents.validate(event(time=time))


@pytest.mark.parametrize('name', ['Foo', 'a_b', 'a-b', 'caf\u00e9', 'comExample', ''])
def test_extension_names_are_lower_case_letters_and_digits(name):
    with refused(f'{name!r} is not a CloudEvents attribute name'):
        cloudevents.validate(event(**{name: 'x'}))


@pytest.mark.parametrize('value', [2**31, -(2**31) - 1, 1.5, 1.0, {'a': 1}, [1]])
def test_extension_values_are_strings_int32_or_booleans(value):
    with refused("'ext' must be a string, an integer or a boolean"):
        cloudevents.validate(event(ext=value))


def test_data_and_data_base64_together_are_refused():
    with refused("either 'data' or 'data_base64'"):
        cloudevents.validate(event(data=[1], data_base64='AAEC'))


@pytest.mark.parametrize(
    'text, words',
    [
        ('A', 'not valid base64'),
        ('AAA', 'not valid base64'),
        ('AA A', 'not valid'),
        ('!!!!', 'not valid'),
        (5, 'must be a string'),
    ],
)
def test_data_base64_must_be_base64_text(text, words):
    with refused(words):
        cloudevents.validate(event(data_base64=text))
    cloudevents.validate(event(data_base64=base64.b64encode(b'\x00\xff').decode()))


# --- validate_structured -------------------------------------------------------------------------


def test_a_0_1_event_is_accepted_as_the_seed_sends_it():
    cloudevents.validate_structured(
        {'cloudEventsVersion': '0.1', 'eventID': '1', 'eventType': 't', 'Any_Name': 1.5, 'data': [1]}
    )


def test_a_body_with_no_version_is_refused_naming_specversion():
    with refused("'specversion' is missing"):
        cloudevents.validate_structured({'id': '1', 'source': '/s', 'type': 't'})


def test_a_structured_1_0_event_follows_the_1_0_rules():
    cloudevents.validate_structured(EVENT)
    with refused("'type' is missing"):
        cloudevents.validate_structured({'specversion': '1.0', 'id': '1', 'source': '/s'})
    with refused("'source' is missing"):
        cloudevents.validate_structured({'cloudEventsVersion': '0.1', 'specversion': '1.0', 'id': '1', 'type': 't'})


# --- extensions: one attribute, and a subscription's ---------------------------------------------


@pytest.mark.parametrize('value', ['x', '', 0, -(2**31), 2**31 - 1, True, False])
def test_an_extension_may_hold_a_string_an_int32_or_a_boolean(value):
    cloudevents.check_extension('comexample', value)


@pytest.mark.parametrize('name', [*RESERVED, 'data_base64', 'Foo', 'a_b', ''])
def test_an_extension_may_not_take_a_reserved_or_bad_name(name):
    with pytest.raises(ClientError, match=re.escape(repr(name))):
        cloudevents.check_extension(name, 'x')


def test_a_subscription_may_add_extensions_named_with_capitals():
    cloudevents.check_added_extensions({'comExampleExtension': 'x', 'Count': 3, 'FLAG': True, 'v2': ''})


@pytest.mark.parametrize('name', ['id', 'data', 'data_base64', 'Type', 'SpecVersion', 'TIME', 'a_b', 'a b', '\u212a'])
def test_a_subscription_may_not_add_reserved_or_bad_names(name):
    with refused(repr(name)):
        cloudevents.check_added_extensions({'ok': 1, name: 'x'})


def test_a_subscription_may_not_add_two_names_differing_only_in_case():
    with refused("'comExample' and 'COMEXAMPLE' are one CloudEvents attribute"):
        cloudevents.check_added_extensions({'comExample': 'a', 'COMEXAMPLE': 'b'})


@pytest.mark.parametrize('value', [{'a': 1}, [1], 1.5, None, 2**31])
def test_a_subscription_may_not_add_values_of_other_types(value):
    with refused("'Ext' must be a string, an integer or a boolean"):
        cloudevents.check_added_extensions({'Ext': value})


def test_added_extensions_are_lower_case_attributes_that_win():
    assert cloudevents.added_to_v1(event(comexample='old'), {'comExample': 'new', 'Count': 3}) == event(
        comexample='new', count=3
    )


# --- from_binary ---------------------------------------------------------------------------------


def test_header_values_are_percent_decoded():
    headers = {**HEADERS, 'ce-subject': 'caf%C3%A9%20%25%22done%22', 'ce-comexample': 'a%2Fb c', 'accept': '*/*'}
    assert from_binary(headers, None, b'') == {
        **BINARY_EVENT,
        'subject': 'café %"done"',
        'comexample': 'a/b c',
    }


def test_a_header_that_is_not_percent_encoded_utf8_is_refused():
    with refused("'ce-subject' is not percent-encoded UTF-8"):
        from_binary({**HEADERS, 'ce-subject': 'caf%E9'}, None, b'')


@pytest.mark.parametrize(
    'content_type', ['application/json', 'text/json', 'application/vnd.x+json; charset=utf-8', 'Application/JSON']
)
def test_a_json_body_is_the_data(content_type):
    received = from_binary(HEADERS, content_type, '{"files": [1, "é"]}'.encode())
    assert received == {**BINARY_EVENT, 'datacontenttype': content_type, 'data': {'files': [1, 'é']}}


def test_a_json_media_type_needs_a_json_body():
    with refused('not valid JSON'):
        from_binary(HEADERS, 'application/json', b'{"files": ')


@pytest.mark.parametrize(
    'content_type, body', [('application/octet-stream', bytes(range(256))), ('text/plain', 'héllo\n'.encode())]
)
def test_any_other_body_is_kept_as_base64_byte_for_byte(content_type, body):
    received = from_binary(HEADERS, content_type, body)
    assert 'data' not in received and received['datacontenttype'] == content_type
    assert base64.b64decode(received['data_base64']) == body


@pytest.mark.parametrize('content_type', [None, 'application/json', 'image/png'])
def test_an_empty_body_is_no_data(content_type):
    received = from_binary(HEADERS, content_type, b'')
    assert 'data' not in received and 'data_base64' not in received


def test_ce_datacontenttype_is_refused():
    with refused('"ce-datacontenttype"'):
        from_binary({**HEADERS, 'ce-datacontenttype': 'application/json'}, 'application/json', b'{}')


@pytest.mark.parametrize('content_type', [None, ''])
def test_a_body_without_a_content_type_is_refused(content_type):
    with refused('needs a Content-Type'):
        from_binary(HEADERS, content_type, b'{}')


def test_a_binary_event_is_validated():
    with refused("'type' is missing"):
        from_binary({name: value for name, value in HEADERS.items() if name != 'ce-type'}, None, b'')
    with refused("specversion '0.3'"):
        from_binary({**HEADERS, 'ce-specversion': '0.3'}, None, b'')
    with refused("'ce-a_b' does not name a CloudEvents attribute"):
        from_binary({**HEADERS, 'ce-a_b': 'x'}, None, b'')


@pytest.mark.parametrize('content_type, body', [(None, b''), ('application/json', b'[1]'), ('text/plain', b'x')])
def test_a_ce_data_header_is_refused_not_taken_as_the_data(content_type, body):
    """The data is the body: a ``ce-data`` header names no attribute (``data`` is reserved)."""
    with pytest.raises(ClientError):
        from_binary({**HEADERS, 'ce-data': 'from a header'}, content_type, body)


# --- as_v1 ---------------------------------------------------------------------------------------

SEED = {
    'cloudEventsVersion': '0.1',
    'eventID': 'A234-1234-1234',
    'source': '/pacifica/metadata/ingest',
    'eventType': 'org.pacifica.metadata.ingest',
    'eventTypeVersion': '1.0',
    'eventTime': '2018-04-05T17:31:00Z',
    'contentType': 'application/json',
    'schemaURL': 'http://example.com/schema',
    'data': [{'destinationTable': 'Files'}],
}


def test_a_0_1_event_is_mapped_to_1_0_names():
    assert cloudevents.as_v1(SEED) == {
        'specversion': '1.0',
        'id': 'A234-1234-1234',
        'source': '/pacifica/metadata/ingest',
        'type': 'org.pacifica.metadata.ingest',
        'eventtypeversion': '1.0',
        'time': '2018-04-05T17:31:00Z',
        'datacontenttype': 'application/json',
        'dataschema': 'http://example.com/schema',
        'data': [{'destinationTable': 'Files'}],
    }


def test_0_1_extensions_with_valid_names_become_attributes():
    extensions = {'comexample': 'x', 'count': 3, 'comExampleExtension': 'v', 'a_b': 1, 'id': 'other'}
    mapped = cloudevents.as_v1({**SEED, 'extensions': extensions})
    assert mapped['comexample'] == 'x' and mapped['count'] == 3 and mapped['id'] == 'A234-1234-1234'
    assert not {'extensions', 'comExampleExtension', 'a_b'} & set(mapped)
    cloudevents.validate(mapped)


def test_a_0_1_extension_named_data_does_not_become_the_data():
    """``data`` is no extension name: a 0.1 extension so named is dropped like any other invalid one."""
    seed = {name: value for name, value in SEED.items() if name != 'data'}
    assert 'data' not in cloudevents.as_v1({**seed, 'extensions': {'data': 'not the data'}})


def test_a_1_0_event_is_returned_as_it_is():
    full = event(time='2026-11-27T10:00:00Z', comexample='x', data=[1])
    assert cloudevents.as_v1(full) == full


# --- to_binary -----------------------------------------------------------------------------------


def test_attributes_become_ce_headers():
    headers, body = cloudevents.to_binary(event(count=42, flag=True, off=False))
    assert headers == {
        'ce-specversion': '1.0',
        'ce-id': 'A234-1234-1234',
        'ce-source': '/pacifica/metadata/ingest',
        'ce-type': 'org.pacifica.metadata.ingest',
        'ce-count': '42',
        'ce-flag': 'true',
        'ce-off': 'false',
    }
    assert body == b''


@pytest.mark.parametrize('value', ['two words', 'say "hi"', '100%', 'caf\u00e9 \u2603 \U0001f600', 'tab\there', '%41'])
def test_header_values_are_percent_encoded_visible_ascii(value):
    headers, _ = cloudevents.to_binary(event(subject=value))
    assert re.fullmatch(r'[\x21-\x7e]+', headers['ce-subject']) and '"' not in headers['ce-subject']
    assert unquote(headers['ce-subject'], errors='strict') == value


def test_datacontenttype_becomes_content_type_and_data_base64_the_body():
    headers, body = cloudevents.to_binary(event(datacontenttype='image/png', data_base64='AAEC/w=='))
    assert headers['Content-Type'] == 'image/png' and 'ce-datacontenttype' not in headers
    assert body == b'\x00\x01\x02\xff'


def test_text_data_of_a_text_media_type_is_sent_as_utf8_text():
    headers, body = cloudevents.to_binary(event(datacontenttype='text/plain; charset=utf-8', data='café'))
    assert headers['Content-Type'] == 'text/plain; charset=utf-8' and body == 'café'.encode()


@pytest.mark.parametrize('content_type', [None, 'application/json', 'application/vnd.x+json'])
@pytest.mark.parametrize('data', [{'files': [1, 'é']}, 'a string', 0, False])
def test_json_data_is_json_encoded(content_type, data):
    attributes = {} if content_type is None else {'datacontenttype': content_type}
    headers, body = cloudevents.to_binary(event(**attributes, data=data))
    assert headers['Content-Type'] == (content_type or 'application/json')
    assert json.loads(body.decode('utf-8')) == data


def test_no_data_is_an_empty_body_and_no_content_type():
    headers, body = cloudevents.to_binary(EVENT)
    assert body == b'' and 'Content-Type' not in headers


# --- properties ----------------------------------------------------------------------------------

#: Any text but lone surrogates (which no header, and no UTF-8, can carry).
texts = st.text(st.characters(exclude_categories=('Cs',)))
non_empty = st.text(st.characters(exclude_categories=('Cs',)), min_size=1)
extension_names = st.from_regex(r'[a-z0-9]{1,12}', fullmatch=True).filter(lambda name: name not in RESERVED)
times = st.builds(
    lambda moment, zone: moment.isoformat() + zone, st.datetimes(), st.sampled_from(['Z', '+00:00', '-08:00', '+05:45'])
)
json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3),
    max_leaves=8,
)
json_types = st.sampled_from(['application/json', 'application/json; charset=utf-8', 'text/json', 'application/x+json'])
other_types = st.sampled_from(['application/octet-stream', 'text/plain', 'image/png', 'application/xml'])
data_members = st.one_of(
    # JSON null data is no data (CloudEvents: a null member is an absent one), so it is left out here.
    st.fixed_dictionaries({'datacontenttype': json_types, 'data': json_data.filter(lambda value: value is not None)}),
    st.fixed_dictionaries(
        {
            'datacontenttype': other_types,
            'data_base64': st.binary(min_size=1).map(lambda b: base64.b64encode(b).decode()),
        }
    ),
    st.fixed_dictionaries({}, optional={'datacontenttype': json_types | other_types}),
)
v1_events = st.builds(
    lambda required, optional, extensions, data: {**extensions, **required, **optional, **data},
    st.fixed_dictionaries({'specversion': st.just('1.0'), 'id': non_empty, 'source': non_empty, 'type': non_empty}),
    st.fixed_dictionaries({}, optional={'subject': non_empty, 'dataschema': non_empty, 'time': times}),
    st.dictionaries(extension_names, texts, max_size=4),
    data_members,
)


@PROPERTY
@given(v1_events)
def test_binary_mode_round_trips(sent):
    """What delivery sends in binary mode, the intake reads back as the same event; headers stay visible ASCII."""
    cloudevents.validate(sent)
    headers, body = cloudevents.to_binary(sent)
    assert all(re.fullmatch(r'[\x21-\x7e]*', value) for name, value in headers.items() if name.startswith('ce-'))
    lowered = {name.lower(): value for name, value in headers.items()}
    assert from_binary(lowered, headers.get('Content-Type'), body) == sent


member_names = (
    st.sampled_from([*RESERVED, 'data_base64', 'comexample', 'Foo', 'a_b', 'x-y', '\u212a', ''])
    | extension_names
    | st.text(max_size=6)
)
member_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**32), 2**32), st.floats(allow_nan=False), st.text(max_size=4)
)


@PROPERTY
@given(st.dictionaries(member_names, member_values, max_size=4))
def test_an_event_validate_accepts_has_only_valid_names(members):
    candidate = {**members, **EVENT}
    try:
        cloudevents.validate(candidate)
    except ClientError:
        return
    for name, value in candidate.items():
        if value is not None:
            assert re.fullmatch('[a-z0-9]+', name) or name == 'data_base64', name


def test_null_data_is_no_data_and_base64_data_has_a_media_type():
    headers, body = cloudevents.to_binary({**EVENT, 'data': None})
    assert body == b'' and 'Content-Type' not in headers
    headers, body = cloudevents.to_binary({**EVENT, 'data_base64': base64.b64encode(b'\x00\xff').decode()})
    assert body == b'\x00\xff' and headers['Content-Type'] == 'application/octet-stream'
