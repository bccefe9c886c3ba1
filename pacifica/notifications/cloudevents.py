"""CloudEvents 1.0: what a valid event is, and its HTTP binary mode both ways.

Nothing here knows about a web framework or the database: the intake hands
in headers and bytes and gets events (structured JSON, the form every event
is stored and matched in), or a :class:`ClientError` naming what is wrong;
delivery hands in an event and gets the headers and body of binary mode.
CloudEvents 0.1 events (the seed's producer) are not checked, only mapped to
1.0 attributes when a subscriber asks for binary mode.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import quote, unquote

from .errors import ClientError

SPECVERSION = '1.0'

#: The attributes every 1.0 event has.
REQUIRED = ('id', 'source', 'specversion', 'type')

#: Every attribute the specification defines, besides extensions.
CORE = (*REQUIRED, 'datacontenttype', 'dataschema', 'subject', 'time')

#: Members of a structured event that hold the data rather than an attribute.
DATA_MEMBERS = ('data', 'data_base64')

#: What an attribute's name may be: lower-case ASCII letters and digits.
ATTRIBUTE_NAME = re.compile(r'[a-z0-9]+')

#: The prefix of binary mode's attribute headers.
HEADER_PREFIX = 'ce-'

#: RFC 3339 date-time, as the specification requires of ``time`` (a leap second allowed).
_RFC3339 = re.compile(
    r'(\d{4})-(\d{2})-(\d{2})[Tt ]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)',
    re.ASCII,
)

#: Integers an attribute may hold (the specification's signed 32-bit range).
_INT_RANGE = (-(2**31), 2**31 - 1)


def is_v1(event: Mapping) -> bool:
    """Whether a structured event declares itself CloudEvents 1.0 (or any ``specversion``)."""
    return 'specversion' in event


def is_json_media_type(content_type: str | None) -> bool:
    """Whether data of this media type is JSON (``application/json``, ``text/json``, ``*/*+json``)."""
    if not content_type:
        return False
    media = content_type.split(';', 1)[0].strip().lower()
    return media in ('application/json', 'text/json') or media.endswith('+json')


def check_extension(name: str, value: object) -> None:
    """Refuse what cannot be an extension attribute: a bad or reserved name, or a value of another type."""
    if not ATTRIBUTE_NAME.fullmatch(name):
        raise ClientError(f'{name!r} is not a CloudEvents attribute name (lower-case letters a-z and digits only)')
    if name in CORE or name in DATA_MEMBERS:
        raise ClientError(f'{name!r} is a CloudEvents core attribute, not an extension')
    if not _is_attribute_value(value):
        raise ClientError(f'CloudEvents attribute {name!r} must be a string, an integer or a boolean')


def v1_name(name: object) -> str | None:
    """The 1.0 name of an attribute named in ASCII letters and digits (in lower case); None for any other."""
    if not isinstance(name, str) or not name.isascii() or not name.isalnum():
        return None
    return name.lower()


def check_added_extensions(extensions: Mapping[str, object]) -> None:
    """Refuse extensions a subscription could not add to every event it receives.

    Names may have capitals, as 0.1's did (``comExampleExtension``): a 1.0
    event takes them in lower case (:func:`added_to_v1`), which is all 1.0
    allows and all binary mode's headers keep, so two names differing only
    in case are one attribute and refused.
    """
    seen: dict[str, str] = {}
    for name, value in extensions.items():
        lower = v1_name(name) or name
        try:
            check_extension(lower, value)
        except ClientError as exc:
            raise ClientError(str(exc).replace(repr(lower), repr(name), 1)) from None
        if lower in seen:
            raise ClientError(f'{seen[lower]!r} and {name!r} are one CloudEvents attribute (names ignore case)')
        seen[lower] = name


def added_to_v1(event: Mapping, extensions: Mapping[str, object]) -> dict:
    """A 1.0 event with a subscription's extensions as attributes (theirs win), named in lower case."""
    return {**event, **{v1_name(name) or name: value for name, value in extensions.items()}}


def validate(event: Mapping) -> None:
    """Raise :class:`ClientError` naming the first thing that makes ``event`` not a valid 1.0 event."""
    for name in REQUIRED:
        if event.get(name) is None:
            raise ClientError(f'CloudEvents attribute {name!r} is missing')
    if event['specversion'] != SPECVERSION:
        raise ClientError(f'specversion {event["specversion"]!r} is not supported (only {SPECVERSION!r})')
    for name in ('id', 'source', 'type', 'subject', 'dataschema', 'datacontenttype', 'time'):
        value = event.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ClientError(f'CloudEvents attribute {name!r} must be a non-empty string')
    if event.get('time') is not None and not _is_timestamp(event['time']):
        raise ClientError(f"CloudEvents attribute 'time' is not an RFC 3339 timestamp: {event['time']!r}")
    if 'data' in event and 'data_base64' in event:
        raise ClientError("an event holds either 'data' or 'data_base64', not both")
    if event.get('data_base64') is not None:
        _decode_base64(event['data_base64'])
    for name, value in event.items():
        if name not in CORE and name not in DATA_MEMBERS and value is not None:
            check_extension(name, value)


def validate_structured(event: Mapping) -> None:
    """Check a body sent as ``application/cloudevents+json``: a 1.0 event, or a 0.1 one as the seed sends."""
    if 'specversion' not in event and 'cloudEventsVersion' not in event:
        raise ClientError("CloudEvents attribute 'specversion' is missing")
    if is_v1(event):
        validate(event)


def _is_timestamp(value: str) -> bool:
    found = _RFC3339.fullmatch(value)
    if found is None:
        return False
    try:
        date(*(int(part) for part in found.group(1, 2, 3)))
    except ValueError:
        return False
    return True


def _is_attribute_value(value: Any) -> bool:
    if isinstance(value, bool) or isinstance(value, str):
        return True
    return isinstance(value, int) and _INT_RANGE[0] <= value <= _INT_RANGE[1]


def _decode_base64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ClientError("'data_base64' must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("'data_base64' is not valid base64") from None


# -- binary mode -----------------------------------------------------------------------------------------


def from_binary(headers: Mapping[str, str], content_type: str | None, body: bytes, parse_json: Any) -> dict:
    """The structured event a binary-mode request carries, checked.

    ``headers`` maps lower-case header names to values; the ``ce-`` ones are
    the attributes, percent-decoded.  The body is the data: parsed with
    ``parse_json`` when its ``Content-Type`` is JSON, else kept as
    ``data_base64``.
    """
    event: dict[str, Any] = {}
    for header, value in headers.items():
        if not header.startswith(HEADER_PREFIX):
            continue
        name = header[len(HEADER_PREFIX) :]
        if name == 'datacontenttype':
            raise ClientError('in binary mode the data\'s media type goes in Content-Type, not "ce-datacontenttype"')
        if name == 'data':
            raise ClientError('in binary mode the data is the body, not a "ce-data" header')
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise ClientError(f'header {header!r} does not name a CloudEvents attribute (a-z and 0-9 only)')
        try:
            # Servers hand headers over as ISO-8859-1 text; their bytes should be UTF-8 (and percent-encoded).
            event[name] = unquote(value.encode('latin-1').decode('utf-8'), errors='strict')
        except UnicodeError:
            raise ClientError(f'header {header!r} is not percent-encoded UTF-8') from None
    if content_type:
        event['datacontenttype'] = content_type
    if body:
        if not content_type:
            raise ClientError('a binary-mode event with data needs a Content-Type naming its media type')
        if is_json_media_type(content_type):
            event['data'] = parse_json(body)
        else:
            event['data_base64'] = base64.b64encode(body).decode('ascii')
    validate(event)
    return event


def as_v1(event: Mapping) -> dict:
    """The event with 1.0 attribute names: a 1.0 event as it is, a 0.1 event mapped.

    0.1's ``extensions`` members become attributes (in lower case) where
    their names can be; ``eventTypeVersion``, which 1.0 dropped, becomes the
    extension ``eventtypeversion``.
    """
    if is_v1(event):
        return dict(event)
    mapped: dict[str, Any] = {'specversion': SPECVERSION}
    own = event.get('extensions')
    if isinstance(own, Mapping):
        for name, value in own.items():
            new = v1_name(name)
            if new is not None and new not in CORE and new not in DATA_MEMBERS:
                mapped[new] = value
    for old, new in (
        ('eventID', 'id'),
        ('source', 'source'),
        ('eventType', 'type'),
        ('eventTime', 'time'),
        ('contentType', 'datacontenttype'),
        ('schemaURL', 'dataschema'),
        ('eventTypeVersion', 'eventtypeversion'),
        ('data', 'data'),
    ):
        if event.get(old) is not None:
            mapped[new] = event[old]
    return mapped


def to_binary(event: Mapping) -> tuple[dict[str, str], bytes]:
    """Binary mode's headers and body for a 1.0 event (:func:`as_v1` maps any other first).

    Attributes become ``ce-`` headers, percent-encoded as the HTTP binding
    asks; ``datacontenttype`` becomes ``Content-Type``; the body is the data:
    decoded from ``data_base64``, a string as UTF-8 text when the media type
    is not JSON, else JSON.
    """
    headers = {
        HEADER_PREFIX + name: _header_value(value)
        for name, value in event.items()
        if name not in DATA_MEMBERS and name != 'datacontenttype' and value is not None
    }
    content_type = event.get('datacontenttype')
    if event.get('data_base64') is not None:
        body = base64.b64decode(event['data_base64'])
        content_type = content_type or 'application/octet-stream'
    elif event.get('data') is not None:
        data = event['data']
        if isinstance(data, str) and content_type and not is_json_media_type(content_type):
            body = data.encode('utf-8')
        else:
            body = json.dumps(data, ensure_ascii=False).encode('utf-8')
            content_type = content_type or 'application/json'
    else:
        body = b''
    if content_type:
        headers['Content-Type'] = str(content_type)
    return headers, body


#: Printable ASCII but space, double quote and percent: what a header value may carry as it is.
_HEADER_SAFE = ''.join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '"%')


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        text = 'true' if value else 'false'
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(',', ':'))
    return quote(text, safe=_HEADER_SAFE)
