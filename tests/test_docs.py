"""The examples of ``docs/exampleusage.md``, run against a real server.

Every fenced ``http`` block on that page is half of an example: a request
(request line, headers, a blank line, an optional JSON body), then the response
it must get (status line, headers, a blank line, the JSON body).  The requests
are sent in page order to ``pacifica-notifications`` on a synced database, and
each response must match its block: the status, every documented header, and
every field of the body, no more and no fewer.

UUIDs and timestamps are the server's to make.  A documented one stands for
whatever the server answered in its place: the answer must have its shape (a
UUID, an ISO 8601 time), the same documented value must stand for the same
real value everywhere (and different ones for different ones, times in the
documented order), and later requests naming it are sent with the real value.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import requests

from .conftest import FIXTURES
from .procs import notifications_server

PAGE = Path(__file__).resolve().parent.parent / 'docs' / 'exampleusage.md'

REQUEST_LINE = re.compile(r'(GET|POST|PUT|DELETE) (/\S*) HTTP/1\.1')
STATUS_LINE = re.compile(r'HTTP/1\.1 (\d{3}) (.+)')
FENCE = re.compile(r'(`{3,}|~{3,})\s*(\S*).*')
UUID_SHAPE = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
TIME_SHAPE = re.compile(r'\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?')


@dataclass
class Message:
    """One ``http`` block: its first line, headers and body text, and where it is on the page."""

    start: str
    headers: dict[str, str]
    body: str
    line: int
    heading: str

    @property
    def where(self) -> str:
        return f'{PAGE.name}:{self.line} ({self.heading})'


@dataclass
class Example:
    request: Message
    response: Message


def http_blocks(text: str) -> list[Message]:
    """Every fenced ``http`` block of a Markdown page, in order, with the heading it is under."""
    blocks, heading, fence, info, start, lines = [], '', None, '', 0, []
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.fullmatch(line.strip())
        if fence is None:
            if opening:
                fence, info, start, lines = opening.group(1), opening.group(2), number, []
            elif line.startswith('#'):  # a heading (lines in fenced blocks are not)
                heading = line.lstrip('#').strip()
        elif line.strip() == fence:
            if info == 'http':
                blocks.append(parse_message(lines, start + 1, heading))
            fence = None
        else:
            lines.append(line)
    assert fence is None, f'{PAGE.name}:{start}: fenced block never closed'
    return blocks


def parse_message(lines: list[str], line: int, heading: str) -> Message:
    """Split an HTTP message into its first line, headers (names lower-cased) and body."""
    assert lines, f'{PAGE.name}:{line}: empty http block'
    headers, rest = {}, lines[1:]
    while rest and rest[0].strip():
        name, sep, value = rest.pop(0).partition(':')
        assert sep, f'{PAGE.name}:{line}: not a header line: {name!r}'
        headers[name.strip().lower()] = value.strip()
    return Message(lines[0].strip(), headers, '\n'.join(rest[1:]), line, heading)


def examples(text: str | None = None) -> list[Example]:
    """The page's examples: its ``http`` blocks taken as request, response, request, response..."""
    blocks = http_blocks(PAGE.read_text(encoding='utf-8') if text is None else text)
    assert blocks, f'{PAGE.name} has no http blocks'
    assert len(blocks) % 2 == 0, f'{blocks[-1].where}: a request without a response'
    found = [Example(blocks[i], blocks[i + 1]) for i in range(0, len(blocks), 2)]
    for example in found:
        request, response = example.request, example.response
        assert REQUEST_LINE.fullmatch(request.start), f'{request.where}: not a request line: {request.start!r}'
        assert STATUS_LINE.fullmatch(response.start), f'{response.where}: not a status line: {response.start!r}'
        for message in (request, response):
            if message.body.strip():
                assert message.headers.get('content-type') == 'application/json', f'{message.where}: JSON body'
                json.loads(message.body)
    return found


class Generated:
    """UUIDs and times the server makes: each documented one bound to the real one first seen in its place."""

    def __init__(self) -> None:
        self.real: dict[str, str] = {}

    @staticmethod
    def kind(value: object) -> str | None:
        if isinstance(value, str):
            if UUID_SHAPE.fullmatch(value):
                return 'a UUID'
            if TIME_SHAPE.fullmatch(value):
                return 'an ISO 8601 time'
        return None

    def check(self, documented: str, actual: object, where: str) -> None:
        """``actual`` stands where ``documented`` is shown: check its shape and that the two stay bound."""
        what = self.kind(documented)
        assert isinstance(actual, str), f'{where}: expected {what}, got {actual!r}'
        if what == 'a UUID':
            assert str(uuid.UUID(actual)) == actual, f'{where}: expected {what}, got {actual!r}'
        else:
            assert TIME_SHAPE.fullmatch(actual), f'{where}: expected {what}, got {actual!r}'
            datetime.fromisoformat(actual)
        if documented in self.real:
            assert actual == self.real[documented], (
                f'{where}: the page shows {documented} again, so the server should answer '
                f'{self.real[documented]} again, not {actual}'
            )
            return
        for other, real in self.real.items():
            assert real != actual, f'{where}: the page shows {documented} and {other}, the server {actual} for both'
            if what != 'a UUID' and self.kind(other) == what:
                shown = datetime.fromisoformat(documented) < datetime.fromisoformat(other)
                answered = datetime.fromisoformat(actual) < datetime.fromisoformat(real)
                assert shown == answered, (
                    f'{where}: the page shows {documented} {"before" if shown else "after"} {other}, '
                    f'the server answered {actual} {"before" if answered else "after"} {real}'
                )
        self.real[documented] = actual

    def substitute(self, text: str, where: str) -> str:
        """Replace every documented value in a request by the real one; refuse a UUID never answered."""
        for documented, actual in self.real.items():
            text = text.replace(documented, actual)
        for found in UUID_SHAPE.findall(text):
            assert found in self.real.values(), f'{where}: {found} was not in any earlier response'
        return text


def compare(expected: object, actual: object, generated: Generated, where: str) -> None:
    """Check ``actual`` against the documented ``expected``, field by field."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f'{where}: expected an object, got {actual!r}'
        assert set(actual) == set(expected), (
            f'{where}: fields differ: only on the page {sorted(set(expected) - set(actual))}, '
            f'only in the response {sorted(set(actual) - set(expected))}'
        )
        for key, value in expected.items():
            compare(value, actual[key], generated, f'{where}.{key}')
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f'{where}: expected a list of {len(expected)}, got {actual!r}'
        )
        for index, (item, got) in enumerate(zip(expected, actual)):
            compare(item, got, generated, f'{where}[{index}]')
    elif generated.kind(expected):
        generated.check(expected, actual, where)
    else:
        if isinstance(expected, str):
            expected = generated.substitute(expected, where)
        assert type(actual) is type(expected) and actual == expected, f'{where}: expected {expected!r}, got {actual!r}'


def run(base_url: str, example: Example, generated: Generated) -> None:
    """Send one documented request and check the response against the documented one."""
    request, response = example.request, example.response
    method, path = REQUEST_LINE.fullmatch(request.start).groups()
    path = generated.substitute(path, request.where)
    headers = {name: generated.substitute(value, request.where) for name, value in request.headers.items()}
    body = generated.substitute(request.body, request.where).encode('utf-8') if request.body.strip() else None
    resp = requests.request(method, base_url + path, headers=headers, data=body, timeout=30)
    where = f'{response.where}: {method} {path}'
    status, reason = STATUS_LINE.fullmatch(response.start).groups()
    assert (resp.status_code, resp.reason) == (int(status), reason), f'{where}: got {resp.status_code}: {resp.text}'
    for name, value in response.headers.items():
        assert resp.headers.get(name) == value, (
            f'{where}: header {name}: expected {value!r}, got {resp.headers.get(name)!r}'
        )
    if response.body.strip():
        compare(json.loads(response.body), resp.json(), generated, f'{where}: body')
    else:
        assert not resp.content, f'{where}: expected no body, got {resp.text!r}'


@pytest.mark.fast
def test_page_holds_the_examples():
    """The page parses, every request has its response, and ``/receive`` posts the fixture event."""
    found = examples()
    requests_made = [REQUEST_LINE.fullmatch(example.request.start).groups() for example in found]
    for method in ('POST', 'GET', 'PUT', 'DELETE'):
        assert any(made[0] == method and made[1].startswith('/eventmatch') for made in requests_made), method
    fixture = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))
    received = [example.request for example in found if example.request.start.startswith('POST /receive ')]
    assert received and all(json.loads(message.body) == fixture for message in received)


@pytest.mark.fast
def test_parser_catches_a_broken_page():
    """A request without its response, or a response without a status line, is refused."""
    request = '```http\nGET /eventmatch HTTP/1.1\nHttp-Remote-User: u\n```\n'
    with pytest.raises(AssertionError, match='without a response'):
        examples(request)
    with pytest.raises(AssertionError, match='not a status line'):
        examples(request + '```http\n200 OK\n```\n')
    assert len(examples(request + '```http\nHTTP/1.1 200 OK\nContent-Type: application/json\n\n[]\n```\n')) == 1


def test_examples_against_the_server(synced, service_env, tmp_path):
    """Every example on the page, in order, against ``pacifica-notifications`` on a synced database."""
    found = examples()
    synced.close()
    server = notifications_server(service_env, tmp_path / 'server.log', '--no-worker')
    try:
        server.wait_ready()
        generated = Generated()
        for example in found:
            run(server.url, example, generated)
    except AssertionError as exc:
        raise AssertionError(f'{exc}\n--- server log ---\n{server.output()}') from None
    finally:
        server.stop()
