"""The web endpoint the service delivers to: check the signature, queue a job, answer at once.

The service disables a subscription whose target fails, so the endpoint
answers 2xx as soon as the job is stored, whatever the job will do; an event
it has already (the same source and id) is answered 2xx and not queued again;
an event carrying this consumer's own mark (what its uploads made) is
dropped, or each output would start the consumer anew.  A delivery whose
Standard Webhooks signature does not check out is refused (401).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

from .jobs import JobQueue

LOG = logging.getLogger(__name__)

#: Largest delivery accepted (the service's own default limit on events).
MAX_BODY = 16 * 1024 * 1024


class Endpoint:
    """An HTTP server on ``host:port`` that turns signed deliveries into jobs."""

    def __init__(self, host: str, port: int, queue: JobQueue, own: Callable[[dict], bool]):
        self.queue = queue
        self.own = own
        self.secret: str | None = None  # set once the subscription exists
        self.accepting = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get('Content-Length') or 0)
                if length > MAX_BODY:
                    self._reply(413, {'message': 'too large'})
                    return
                body = self.rfile.read(length)
                self._reply(*endpoint.take(body, dict(self.headers)))

            def _reply(self, status: int, answer: dict) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                LOG.debug('endpoint: ' + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def take(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        """What to answer a delivery: queue it when it is ours, signed, and new."""
        if not self.accepting.is_set() or self.secret is None:
            return 503, {'message': 'not taking events now'}
        try:
            Webhook(self.secret).verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError) as exc:  # ValueError: a body that is not UTF-8
            return 401, {'message': f'not a delivery of our subscription: {exc}'}
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return 400, {'message': 'not a structured event (a JSON object)'}
        if self.own(event):
            return 200, {'status': 'ignored', 'message': 'made by this consumer'}
        if not self.queue.add(event):
            return 200, {'status': 'duplicate'}
        return 202, {'status': 'queued'}

    def stop(self) -> None:
        """Stop taking events and close the server."""
        self.accepting.clear()
        self.server.shutdown()
        self.server.server_close()
