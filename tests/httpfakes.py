"""Small real HTTP servers for tests: a catch-all target and a policy server.

Each listens on 127.0.0.1 on an ephemeral port in a thread of the test
process, records every request, and answers from a per-path script of
replies (the last reply repeats), 200 by default.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Answer:
    """One scripted reply: status, body, extra headers, and a delay before answering."""

    status: int = 200
    body: str = '{"status": "success"}'
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Call:
    """One request as received."""

    path: str
    headers: dict
    body: bytes
    at: float

    def json(self):
        return json.loads(self.body)


class Recorder:
    """A catch-all HTTP server that records requests and answers from scripts."""

    def __init__(self, port: int = 0):
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._scripts: dict[str, list[Answer]] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            # Headers and body go out in two writes; without TCP_NODELAY the
            # second waits ~40 ms for the client's delayed ACK (Nagle).
            disable_nagle_algorithm = True

            def do_POST(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the client died mid-request (a killed worker): nothing was delivered
                    self.close_connection = True
                    return
                answer = recorder._record(Call(self.path, dict(self.headers), body, time.monotonic()))
                if answer.delay:
                    time.sleep(answer.delay)
                data = answer.body.encode()
                self.send_response(answer.status)
                for key, value in {'Content-Type': 'application/json', **answer.headers}.items():
                    self.send_header(key, value)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', port), Handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _record(self, call: Call) -> Answer:
        with self._lock:
            self._calls.append(call)
            script = self._scripts.get(call.path) or [Answer()]
            return script.pop(0) if len(script) > 1 else script[0]

    def script(self, path: str, *answers: Answer) -> None:
        """Answer requests to ``path`` with these replies in order, the last one from then on."""
        with self._lock:
            self._scripts[path] = list(answers)

    def calls(self, path: str | None = None) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if path is None or call.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
