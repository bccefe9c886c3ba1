#!/usr/bin/env python3
"""A stand-in for the Pacifica policy server, for the 0.5.2 compatibility suite.

Only the one call the notifications service makes is served:
``POST /events/<user>`` with the event as JSON.  Like the real policy server
(pacifica-policy), a user it knows gets ``200 {"status": "success"}``; a user it
does not know makes it fail with a ``500`` JSON error.  Everything else is a
JSON ``404``.  Stdlib only: ``python policy_server.py [--host H] [--port P]``.
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

#: The users the suite's tests expect the policy server to know.
KNOWN_USERS = frozenset({'dmlb2001', 'bjohn'})


class PolicyHandler(BaseHTTPRequestHandler):
    """Answer ``POST /events/<user>``."""

    server_version = 'compat-policy/1.0'

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode('utf-8')
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        """The service asks whether a user may see an event."""
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length else b''
        parts = urlsplit(self.path).path.strip('/').split('/')
        if len(parts) != 2 or parts[0] != 'events' or not parts[1]:
            self._reply(404, {'status': '404 Not Found', 'message': f'no such path {self.path}'})
            return
        user = unquote(parts[1])
        try:
            json.loads(raw.decode('utf-8') or 'null')
        except ValueError as exc:
            self._reply(400, {'status': '400 Bad Request', 'message': f'body is not JSON: {exc}'})
            return
        if user in KNOWN_USERS:
            self._reply(200, {'status': 'success'})
        else:
            # pacifica-policy looks the user up and fails on an unknown one.
            self._reply(
                500,
                {
                    'status': '500 Internal Server Error',
                    'message': f'user {user!r} not found',
                    'traceback': 'IndexError: list index out of range',
                },
            )

    def do_GET(self):
        """Nothing is served by GET (the readiness probe uses POST)."""
        self._reply(404, {'status': '404 Not Found', 'message': f'no such path {self.path}'})

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        sys.stderr.write(f'policy-stub: {self.address_string()} - {format % args}\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8181)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), PolicyHandler)
    server.daemon_threads = True
    sys.stderr.write(f'policy-stub: listening on {args.host}:{args.port}\n')
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
