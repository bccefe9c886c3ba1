"""The busiest ``POST`` routes as plain WSGI: without CherryPy's per-request work.

Every event a producer sends passes ``POST /receive``, and every new
subscription ``POST /eventmatch``; CherryPy's dispatch, tools, hooks and
request and response objects cost more than the work itself there.  A
:class:`PostApp` grafted at such a path serves ``POST`` on the path itself and
hands every other request (another method, a deeper path) to the CherryPy
application, so each route keeps one set of rules: it calls the same
functions as :mod:`rest`, with the same statuses, the same JSON errors, the
same body limit, and writes an access line in the same log.  :func:`app.mount`
grafts them unless the CherryPy file turns on tools there, which only
CherryPy would apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, NamedTuple

import cherrypy

from . import metrics, subscriptions
from .binding import close, connect
from .config import settings
from .errors import ClientError
from .rest import (
    accept_request,
    check_media_type,
    check_receive_media_type,
    error_body,
    parse_json_object,
    remote_user,
    unexpected_error,
)

StartResponse = Callable[..., Any]

#: CherryPy's words for a body over the limit, so both paths say the same.
TOO_LARGE = 'The entity sent with the request exceeds the maximum allowed bytes.'


class Route(NamedTuple):
    """A fast route: what it checks before reading the body, then its work (both may raise :class:`ClientError`)."""

    check: Callable[[dict], None]
    handle: Callable[[dict, bytes], dict]
    refused: Callable[[], None] = lambda: None  # what to count when the route answers 4xx


class _Refused(Exception):
    """Answer with this status and message (a JSON error)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class PostApp:
    """A WSGI application serving ``POST`` at the path it is grafted at, and passing on the rest.

    ``fallback`` (the CherryPy application mounted at ``/``) serves every
    other method and every deeper path, as it would without the graft.
    """

    def __init__(
        self,
        route: Route,
        fallback: Callable[[dict, StartResponse], Iterable[bytes]],
        max_bytes: int,
        extra_headers: Iterable[tuple[str, str]] = (),
    ):
        self.route = route
        self.fallback = fallback
        self.max_bytes = max_bytes
        self.extra_headers = [(name, value) for name, value in extra_headers if name.lower() != 'content-type']

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get('PATH_INFO', '') not in ('', '/') or environ['REQUEST_METHOD'] != 'POST':
            whole_path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
            return self.fallback({**environ, 'SCRIPT_NAME': '', 'PATH_INFO': whole_path}, start_response)
        try:
            status, body = 200, self._answer(environ)
        except _Refused as exc:
            status, body = exc.status, error_body(status_line(exc.status), str(exc))
            if status < 500:
                self.route.refused()
        finally:
            close()
        data = json.dumps(body).encode('utf-8')
        start_response(
            status_line(status),
            [('Content-Type', 'application/json'), ('Content-Length', str(len(data))), *self.extra_headers],
        )
        access_line(environ, status, len(data))
        return [data]

    def _answer(self, environ: dict) -> dict:
        try:
            self.route.check(environ)
            return self.route.handle(environ, self._read_body(environ))
        except _Refused:
            raise
        except ClientError as exc:
            raise _Refused(exc.status, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - 503 or a bare 500; the traceback goes to the log
            raise _Refused(*unexpected_error(exc)) from None

    def _read_body(self, environ: dict) -> bytes:
        """The body, refused (413) when longer than the limit, whether sized or chunked."""
        stream = environ['wsgi.input']
        length = environ.get('CONTENT_LENGTH') or ''
        too_large = _Refused(413, TOO_LARGE)
        if length:
            try:
                size = int(length)
            except ValueError:
                raise _Refused(400, 'Content-Length is not a number') from None
            if size > self.max_bytes:
                raise too_large
            return stream.read(size)
        raw = stream.read(self.max_bytes + 1)
        if len(raw) > self.max_bytes:
            raise too_large
        return raw


def _ce_headers(environ: dict) -> dict[str, str]:
    """The request's CloudEvents attribute headers (``ce-*``), by lower-case name."""
    return {key[5:].lower().replace('_', '-'): value for key, value in environ.items() if key.startswith('HTTP_CE_')}


def check_receive(environ: dict) -> None:
    check_receive_media_type(environ.get('CONTENT_TYPE', ''), _ce_headers(environ))


def receive(environ: dict, raw: bytes) -> dict:
    """``POST /receive``: store the event (or batch), keeping a structured event's text as sent."""
    return accept_request(environ.get('CONTENT_TYPE', ''), _ce_headers(environ), raw)


def check_json(environ: dict) -> None:
    check_media_type(environ.get('CONTENT_TYPE', ''))


def create_subscription(environ: dict, raw: bytes) -> dict:
    """``POST /eventmatch``: create a subscription owned by the caller."""
    user = remote_user(environ.get(_environ_key(settings().user_header), ''))
    body = parse_json_object(raw)
    connect()
    return subscriptions.create(user, body).to_hash()


#: The fast routes by path.
ROUTES: dict[str, Route] = {
    '/receive': Route(check_receive, receive, lambda: metrics.received('rejected')),
    '/eventmatch': Route(check_json, create_subscription),
}


def _environ_key(header: str) -> str:
    """Where WSGI puts a request header: ``Http-Remote-User`` is ``HTTP_HTTP_REMOTE_USER``."""
    return 'HTTP_' + header.upper().replace('-', '_')


def status_line(status: int) -> str:
    return f'{status} {HTTPStatus(status).phrase}'


def access_line(environ: dict, status: int, size: int) -> None:
    """One line in CherryPy's access log, in the format CherryPy writes for every other path."""
    access = cherrypy.log.access_log
    if not access.handlers and not access.propagate:
        return
    request_line = f'{environ["REQUEST_METHOD"]} {environ.get("SCRIPT_NAME", "")}{environ.get("PATH_INFO", "")}'
    if environ.get('QUERY_STRING'):
        request_line += f'?{environ["QUERY_STRING"]}'
    request_line += f' {environ.get("SERVER_PROTOCOL", "HTTP/1.1")}'
    access.log(
        logging.INFO,
        '%s - - %s "%s" %d %d "%s" "%s"',
        _printable(environ.get('REMOTE_ADDR', '-')),
        cherrypy.log.time(),
        _printable(request_line),
        status,
        size,
        _printable(environ.get('HTTP_REFERER', '')),
        _printable(environ.get('HTTP_USER_AGENT', '')),
    )


def _printable(text: str) -> str:
    """Escape quotes and unprintable characters, so a header cannot forge or break a log line."""
    return repr(text.replace('"', '\\"').encode('utf-8'))[2:-1].replace('\\\\', '\\')
