"""``POST /receive`` as a plain WSGI application: the hot path, without CherryPy's per-request work.

Every event a producer sends passes here, so this path skips what it does
not need of CherryPy (dispatch, tools, hooks, request and response objects),
which otherwise costs more than storing the event.  It keeps every rule of
:class:`rest.ReceiveEvent` by calling the same functions: the same statuses,
the same JSON errors, the same body limit, an access line in the same log.
:func:`app.mount` grafts it at ``/receive`` unless the CherryPy file turns
on tools there, which only the CherryPy handler would apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import cherrypy

from .binding import close
from .errors import ClientError
from .rest import accept_event, check_media_type, error_body, parse_json_object, unexpected_error

LOG = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

#: CherryPy's words for a body over the limit, so both paths say the same.
TOO_LARGE = 'The entity sent with the request exceeds the maximum allowed bytes.'


class _Refused(Exception):
    """Answer with this status and message (a JSON error)."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers


class ReceiveApp:
    """The WSGI application serving ``POST /receive`` (mounted at that path)."""

    def __init__(self, max_bytes: int, extra_headers: Iterable[tuple[str, str]] = ()):
        self.max_bytes = max_bytes
        self.extra_headers = [(name, value) for name, value in extra_headers if name.lower() != 'content-type']

    def __call__(self, environ: dict, start_response: StartResponse) -> list[bytes]:
        headers: tuple[tuple[str, str], ...] = ()
        try:
            status, body = 200, self._answer(environ)
        except _Refused as exc:
            status, headers = exc.status, exc.headers
            body = error_body(_status_line(status), str(exc))
        finally:
            close()
        data = json.dumps(body).encode('utf-8')
        start_response(
            _status_line(status),
            [
                ('Content-Type', 'application/json'),
                ('Content-Length', str(len(data))),
                *headers,
                *self.extra_headers,
            ],
        )
        _access_line(environ, status, len(data))
        return [data]

    def _answer(self, environ: dict) -> dict:
        if environ.get('PATH_INFO', '') not in ('', '/'):
            raise _Refused(404, f'The path {environ.get("SCRIPT_NAME", "")}{environ["PATH_INFO"]!r} was not found.')
        if environ['REQUEST_METHOD'] != 'POST':
            raise _Refused(405, 'The method is not allowed for this resource.', (('Allow', 'POST'),))
        try:
            check_media_type(environ.get('CONTENT_TYPE', ''))
            raw = self._read_body(environ)
            return accept_event(parse_json_object(raw), raw.decode('utf-8'))
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


def _status_line(status: int) -> str:
    return f'{status} {HTTPStatus(status).phrase}'


def _access_line(environ: dict, status: int, size: int) -> None:
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
