"""The HTTP peers of the benchmarks, each run as its own process (stdlib only).

    python bench/peers.py policy            # POST /events/<user> (any path) -> 200 {"status":"success"}
    python bench/peers.py target [--hang-seconds S]

Both listen on 127.0.0.1 on an ephemeral port and print ``PORT <n>`` as their first line.  They
use HTTP/1.1 keep-alive and TCP_NODELAY (without it every response stalls ~40 ms on the
client's delayed ACK), one thread per connection.

The target records the arrival time (``time.monotonic()``, the same clock in every process of
the machine), path, ``webhook-id`` header and ``eventID`` of each POST, then answers 200;
under ``/hang/`` it records the request, then waits ``--hang-seconds`` before answering.
``GET /__bench/arrivals?since=N`` returns the arrivals from index N on, ``GET /__bench/count``
the number of POSTs so far; POSTs under ``/__bench/`` are answered but not recorded (for
measuring the peer's own ceiling).

A peer exits by itself when the process that started it is gone, and after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SUCCESS = b'{"status": "success"}'


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str, str, str]] = []
        self.count = 0


def make_handler(kind: str, state: State, hang_seconds: float):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'
        disable_nagle_algorithm = True

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
            now = time.monotonic()
            if self.path.startswith('/__bench/'):
                self._answer(200, SUCCESS)
                return
            marker = ''
            if kind == 'target':
                try:
                    marker = str(json.loads(body).get('eventID', ''))
                except (ValueError, AttributeError):
                    pass
            with state.lock:
                state.count += 1
                if kind == 'target':
                    state.arrivals.append((now, self.path, self.headers.get('webhook-id', ''), marker))
            if kind == 'target' and self.path.startswith('/hang/'):
                time.sleep(hang_seconds)
            self._answer(200, SUCCESS)

        def do_GET(self):
            parts = urlsplit(self.path)
            if parts.path == '/__bench/arrivals':
                since = int(parse_qs(parts.query).get('since', ['0'])[0])
                with state.lock:
                    chunk = state.arrivals[since:]
                self._answer(200, json.dumps({'next': since + len(chunk), 'arrivals': chunk}).encode())
            elif parts.path == '/__bench/count':
                with state.lock:
                    count = state.count
                self._answer(200, json.dumps({'count': count}).encode())
            else:
                self._answer(404, b'{}')

        def log_message(self, *args):
            pass

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def watchdog(parent: int, max_seconds: float) -> None:
    deadline = time.monotonic() + max_seconds
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(1)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('kind', choices=('policy', 'target'))
    parser.add_argument('--hang-seconds', type=float, default=15.0)
    parser.add_argument('--max-seconds', type=float, default=6 * 3600)
    args = parser.parse_args()
    threading.Thread(target=watchdog, args=(os.getppid(), args.max_seconds), daemon=True).start()
    server = Server(('127.0.0.1', 0), make_handler(args.kind, State(), args.hang_seconds))
    print(f'PORT {server.server_address[1]}', flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == '__main__':
    main()
