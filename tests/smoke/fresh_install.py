"""Smoke test of a fresh install, steps 2-7 (fresh_install.sh does step 1 and calls this).

Standard library only: run it with the system ``python3``, never with the fresh venv's.

    python3 fresh_install.py run --venv DIR --repo DIR --work DIR
        Start the installed ``pacifica-notifications`` with an empty environment, subscribe a local
        target, post the seed's fixture event, wait for its delivery, stop the server with SIGINT
        and require that every process of its session is gone within 15 s.
    python3 fresh_install.py reap --pidfile FILE --marker TEXT
        Last-resort cleanup for the shell's trap: SIGKILL the process group named in FILE if any
        of its processes still runs with TEXT (the work dir) on its command line.

Exit status 0 on success; otherwise 1, after one line ``FAIL step N (name): reason`` and the
server's log tail.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

START_DEADLINE = 60.0  # seconds for the service to answer HTTP
DELIVERY_DEADLINE = 60.0  # seconds for the event to reach the target
STOP_DEADLINE = 15.0  # seconds for the whole session to exit after SIGINT
LOG_TAIL_LINES = 40

# urllib must not send loopback requests through a proxy named in the caller's environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StepFailed(Exception):
    """A step of the smoke test failed; ``str()`` is the reason."""


def say(line: str) -> None:
    print(line, flush=True)


# --------------------------------------------------------------------------- /proc


def proc_stat(pid: int) -> dict | None:
    """State, ppid, pgrp, session and start time of a process, from /proc; None if it is gone."""
    try:
        raw = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(')') + 2 :].split()  # the name may hold spaces and parentheses
    return {
        'pid': pid,
        'state': fields[0],
        'ppid': int(fields[1]),
        'pgrp': int(fields[2]),
        'session': int(fields[3]),
        'start': int(fields[19]),
    }


def cmdline(pid: int) -> str:
    try:
        raw = Path(f'/proc/{pid}/cmdline').read_bytes()
    except OSError:
        return '?'
    return raw.replace(b'\0', b' ').decode(errors='replace').strip()


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir('/proc') if name.isdigit()]


def group_members(leader: int, known: dict[int, int] | None = None) -> list[dict]:
    """Live (non-zombie) processes whose session or process group is ``leader``, plus any process
    in ``known`` (pid -> start time) that still runs with the same start time."""
    found = []
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat is None or stat['state'] == 'Z':
            continue
        if leader in (stat['session'], stat['pgrp']) or (known and known.get(pid) == stat['start']):
            found.append(stat)
    return found


#: Shown as $WORK in process descriptions, to keep them short.
WORK_DIR = ''


def describe(members: list[dict]) -> str:
    """One 'pid N [state] command line' per process, the work dir written $WORK."""

    def line(member):
        text = cmdline(member['pid'])
        if WORK_DIR:
            text = text.replace(WORK_DIR, '$WORK')
        return f'pid {member["pid"]} [{member["state"]}] {text[:100]}'

    return '; '.join(line(m) for m in members)


def sigint_disposition(pid: int) -> str:
    """'ignored', 'caught' or 'default', read from /proc/PID/status."""
    masks = {}
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            key, _, value = line.partition(':')
            if key in ('SigIgn', 'SigCgt'):
                masks[key] = int(value.strip(), 16)
    except OSError:
        return 'unknown (process gone)'
    bit = 1 << (signal.SIGINT - 1)
    if masks.get('SigIgn', 0) & bit:
        return 'ignored'
    if masks.get('SigCgt', 0) & bit:
        return 'caught'
    return 'default'


# --------------------------------------------------------------------------- target server


class Target:
    """A local HTTP server that records every POST and answers 200."""

    def __init__(self):
        self.received: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            disable_nagle_algorithm = True

            def _body(self) -> bytes:
                if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b';')[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                                pass
                            return b''.join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get('Content-Length') or 0))

            def do_POST(self):
                body = self._body()
                with target.cond:
                    target.received.append((self.path, body))
                    target.cond.notify_all()
                self._answer(200, b'{"status": "ok"}')

            def do_GET(self):
                self._answer(404, b'{"status": "not found"}')

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep the smoke output short
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name='target', daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- HTTP client


def call(
    method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One request; any HTTP answer (error statuses included) is returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- the run


class Run:
    def __init__(self, args):
        self.venv = Path(args.venv).resolve()
        self.repo = Path(args.repo).resolve()
        self.work = Path(args.work).resolve()
        global WORK_DIR
        WORK_DIR = str(self.work)
        self.home = self.work / 'home'
        self.cwd = self.work / 'cwd'
        self.log = self.work / 'server.log'
        self.pidfile = self.work / 'server.pid'
        self.proc: subprocess.Popen | None = None
        self.target: Target | None = None
        self.step = (2, 'start server')

    # -- helpers

    def begin(self, number: int, name: str) -> float:
        self.step = (number, name)
        return time.monotonic()

    def ok(self, started: float, detail: str) -> None:
        number, name = self.step
        say(f'ok   step {number} {name} ({time.monotonic() - started:.1f}s): {detail}')

    def server_alive(self) -> None:
        """Fail the current step if the server process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise StepFailed(f'the server exited with status {self.proc.returncode}')

    def log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors='replace').splitlines()
        except OSError:
            return '(no server log)'
        return '\n'.join(lines[-LOG_TAIL_LINES:]) or '(server log is empty)'

    # -- steps

    def start(self) -> None:
        started = self.begin(2, 'start server')
        script = self.venv / 'bin' / 'pacifica-notifications'
        if not script.exists():
            raise StepFailed(f'{script} is not installed')
        self.home.mkdir()
        self.cwd.mkdir()
        self.port = free_port()
        env = {'PATH': f'{self.venv}/bin:/usr/bin:/bin', 'HOME': str(self.home)}
        with open(self.log, 'wb') as out:
            self.proc = subprocess.Popen(
                [str(script), '-p', str(self.port)],
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pidfile.write_text(str(self.proc.pid))
        self.ok(
            started, f'pid {self.proc.pid} (own session), port {self.port}, HOME={self.home}, env: PATH and HOME only'
        )

    def start_target(self) -> None:
        started = self.begin(3, 'start target')
        self.target = Target()
        self.ok(started, f'http://127.0.0.1:{self.target.port}/receive')

    def wait_ready(self) -> None:
        started = self.begin(4, 'wait for HTTP')
        deadline = started + START_DEADLINE
        last = 'no answer yet'
        while True:
            self.server_alive()
            try:
                status, _ = call(
                    'GET',
                    f'http://127.0.0.1:{self.port}/eventmatch',
                    timeout=2.0,
                    headers={'Http-Remote-User': 'dmlb2001'},
                )
                break
            except (OSError, urllib.error.URLError) as exc:
                last = str(getattr(exc, 'reason', exc))
            if time.monotonic() > deadline:
                raise StepFailed(f'the server did not answer HTTP within {START_DEADLINE:.0f}s (last: {last})')
            time.sleep(0.1)
        self.ok(started, f'GET /eventmatch answered {status}')

    def subscribe(self) -> None:
        started = self.begin(4, 'create subscription')
        body = {'name': 'smoke', 'jsonpath': 'data', 'target_url': f'http://127.0.0.1:{self.target.port}/receive'}
        status, reply = call(
            'POST',
            f'http://127.0.0.1:{self.port}/eventmatch',
            json.dumps(body).encode(),
            {'Http-Remote-User': 'dmlb2001', 'Content-Type': 'application/json'},
        )
        text = reply.decode(errors='replace')[:300]
        if status != 200:
            raise StepFailed(f'POST /eventmatch answered {status}: {text}')
        try:
            uuid = json.loads(reply)['uuid']
        except (ValueError, KeyError, TypeError):
            raise StepFailed(f'POST /eventmatch answered 200 without a uuid: {text}') from None
        self.ok(started, f'POST /eventmatch -> 200, uuid {uuid}')

    def post_event(self) -> None:
        started = self.begin(5, 'post event')
        fixture = self.repo / 'tests' / 'fixtures' / 'events.json'
        payload = fixture.read_bytes()
        self.event_id = json.loads(payload)['eventID']
        status, reply = call(
            'POST', f'http://127.0.0.1:{self.port}/receive', payload, {'Content-Type': 'application/json'}
        )
        text = reply.decode(errors='replace')[:300]
        try:
            answer = json.loads(reply)
        except ValueError:
            answer = None
        if status != 200 or not isinstance(answer, dict) or answer.get('status') != 'accepted':
            raise StepFailed(f'POST /receive answered {status}: {text}')
        self.ok(started, f'POST /receive -> 200 accepted, uuid {answer.get("uuid")}, eventID {self.event_id}')

    def wait_delivery(self) -> None:
        started = self.begin(6, 'delivery')
        deadline = started + DELIVERY_DEADLINE
        seen = 0
        with self.target.cond:
            while True:
                for path, body in self.target.received[seen:]:
                    try:
                        event = json.loads(body)
                    except ValueError:
                        event = None
                    if isinstance(event, dict) and event.get('eventID') == self.event_id:
                        self.ok(started, f'target got eventID {self.event_id} on POST {path} ({len(body)} bytes)')
                        return
                seen = len(self.target.received)
                self.server_alive()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StepFailed(
                        f'the target did not receive eventID {self.event_id} within '
                        f'{DELIVERY_DEADLINE:.0f}s ({seen} other POST(s) received)'
                    )
                self.target.cond.wait(min(left, 0.5))

    def stop(self) -> None:
        started = self.begin(7, 'SIGINT stop')
        self.server_alive()
        pid = self.proc.pid
        members = group_members(pid)
        known = {m['pid']: m['start'] for m in members}
        disposition = sigint_disposition(pid)
        say(f'     session {pid} before SIGINT: {describe(members)}')
        say(
            f"     server's SIGINT disposition: {disposition}; this helper's: "
            f'{"ignored" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "not ignored"}'
        )
        sent = time.monotonic()
        os.kill(pid, signal.SIGINT)
        deadline = sent + STOP_DEADLINE
        while True:
            self.proc.poll()
            left = group_members(pid, known)
            if not left and self.proc.returncode is not None:
                break
            if time.monotonic() > deadline:
                note = ' (the server ignores SIGINT)' if disposition == 'ignored' else ''
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                for member in left:
                    if member['pgrp'] != pid:
                        try:
                            os.kill(member['pid'], signal.SIGKILL)
                        except OSError:
                            pass
                raise StepFailed(
                    f'{len(left)} process(es) still running {STOP_DEADLINE:.0f}s '
                    f'after SIGINT{note}, SIGKILLed: {describe(left)}'
                )
            time.sleep(0.05)
        took = time.monotonic() - sent
        self.ok(
            started,
            f'all {len(members)} process(es) of session {pid} exited '
            f'{took:.2f}s after SIGINT (server exit status {self.proc.returncode})',
        )

    def report_state(self) -> None:
        data = self.home / '.local' / 'share' / 'pacifica-notifications'
        files = sorted(p.name for p in data.iterdir()) if data.is_dir() else []
        strays = sorted(p.name for p in self.cwd.iterdir())
        say(
            f'     data folder {data}: {", ".join(files) or "missing or empty"}; '
            f'files left in the working directory: {", ".join(strays) or "none"}'
        )

    def cleanup(self) -> None:
        if self.target is not None:
            self.target.close()
        if self.proc is not None:
            if group_members(self.proc.pid):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def main(self) -> int:
        try:
            self.start()
            self.start_target()
            self.wait_ready()
            self.subscribe()
            self.post_event()
            self.wait_delivery()
            self.stop()
            self.report_state()
            return 0
        except KeyboardInterrupt:
            number, name = self.step
            say(f'FAIL step {number} ({name}): interrupted (SIGINT to the smoke test)')
            return 130
        except Exception as exc:  # every failure gets its FAIL line and the log tail
            number, name = self.step
            reason = str(exc) if isinstance(exc, StepFailed) else f'{type(exc).__name__}: {exc}'
            say(f'FAIL step {number} ({name}): {reason}')
            say(f'---- server log tail ({self.log}) ----')
            say(self.log_tail())
            say('---- end of server log ----')
            return 1
        finally:
            self.cleanup()


def reap(args) -> int:
    """SIGKILL the recorded process group if it still runs processes of this smoke run."""
    try:
        leader = int(Path(args.pidfile).read_text().strip())
    except (OSError, ValueError):
        return 0
    mine = [m for m in group_members(leader) if args.marker in cmdline(m['pid'])]
    if mine:
        say(f'cleanup: SIGKILL leftover processes: {describe(mine)}')
        for member in mine:
            try:
                os.kill(member['pid'], signal.SIGKILL)
            except OSError:
                pass
    return 0


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('run')
    run.add_argument('--venv', required=True)
    run.add_argument('--repo', required=True)
    run.add_argument('--work', required=True)
    cleanup = sub.add_parser('reap')
    cleanup.add_argument('--pidfile', required=True)
    cleanup.add_argument('--marker', required=True)
    return parser.parse_args(argv)


if __name__ == '__main__':
    ARGS = parse()
    sys.exit(Run(ARGS).main() if ARGS.command == 'run' else reap(ARGS))
