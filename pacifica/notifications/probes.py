"""``GET /status`` and ``GET /metrics``: plain WSGI applications, mounted where the settings say.

They need no user header (a load balancer or Prometheus asks them), show no
event or secret, and write the same access line as every other route.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from . import metrics, status
from .fastpost import StartResponse, access_line, status_line
from .rest import error_body

#: What a probe answers: status code, content type, body.
Answer = Callable[[], tuple[int, str, bytes]]


def _status() -> tuple[int, str, bytes]:
    code, body = status.report()
    return code, 'application/json', json.dumps(body).encode('utf-8')


def _metrics() -> tuple[int, str, bytes]:
    content_type, text = metrics.exposition()
    return 200, content_type, text


class Probe:
    """A WSGI application answering ``GET`` (and ``HEAD``) on its own path, with JSON errors otherwise."""

    def __init__(self, answer: Answer):
        self.answer = answer

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        headers: list[tuple[str, str]] = []
        method = environ['REQUEST_METHOD']
        if environ.get('PATH_INFO', '') not in ('', '/'):
            code, content_type, body = self._error(404, 'Nothing matches the given URI')
        elif method not in ('GET', 'HEAD'):
            code, content_type, body = self._error(405, 'Specified method is invalid for this resource')
            headers.append(('Allow', 'GET, HEAD'))
        else:
            code, content_type, body = self.answer()
        start_response(
            status_line(code), [('Content-Type', content_type), ('Content-Length', str(len(body))), *headers]
        )
        access_line(environ, code, len(body))
        return [b''] if method == 'HEAD' else [body]

    @staticmethod
    def _error(code: int, message: str) -> tuple[int, str, bytes]:
        return code, 'application/json', json.dumps(error_body(status_line(code), message)).encode('utf-8')


def status_app() -> Probe:
    return Probe(_status)


def metrics_app() -> Probe:
    return Probe(_metrics)
