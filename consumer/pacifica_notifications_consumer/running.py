"""One job: lay out SRC and DST for one notification, run ``__main__.py SRC DST``, and say how it went.

The entry point runs as the leader of a process group of its own, so a time limit or a stop reaches
whatever it started too: the whole group is killed then, and also when the entry point exits, so no
job leaves processes behind.  The job's files stay in ``job_dir`` for whoever wants to look.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from . import jobenv
from .package import ENTRY_POINT, ConsumerError

#: Bytes of stdout and stderr kept in a :class:`JobResult`.
TAIL_BYTES = 4096
#: Seconds between looks at the entry point, the clock and the stop event.
POLL = 0.05


@dataclass
class JobResult:
    """How a job ended; ``ok`` only if the entry point exited 0 and reported no failure in time."""

    ok: bool
    exit_status: Optional[int]  # negative: killed by that signal; None: never started
    stdout: str
    stderr: str
    timed_out: bool = False
    failures: list[str] = field(default_factory=list)
    stopped: bool = False


def run_job(
    job_dir: Path,
    event: dict[str, Any],
    package_folder: Path,
    python: Path,
    time_limit: float,
    env: dict[str, str],
    stop: Optional[threading.Event] = None,
) -> JobResult:
    """Run the entry point on ``event`` in ``job_dir``, for at most ``time_limit`` seconds or until ``stop`` is set."""
    job_dir = job_dir.resolve()
    src, dst = job_dir / 'SRC', job_dir / 'DST'
    failures_file = job_dir / 'failures.jsonl'
    stdout_file, stderr_file = job_dir / 'stdout.txt', job_dir / 'stderr.txt'
    try:
        subdirs = upload_subdirs(event)
    except ConsumerError as exc:
        return JobResult(ok=False, exit_status=None, stdout='', stderr=str(exc))
    # A job taken up again after a restart starts from scratch, not from the half-done files of the last try.
    for stale in (src, dst):
        shutil.rmtree(stale, ignore_errors=True)
    failures_file.unlink(missing_ok=True)
    (src / 'downloads').mkdir(parents=True)
    (dst / 'uploads').mkdir(parents=True)
    for subdir in subdirs:
        (dst / 'uploads' / subdir).mkdir(parents=True, exist_ok=True)
    (src / 'notification.json').write_text(json.dumps(event), encoding='utf-8')

    python = Path(os.path.abspath(python))
    child_env = dict(env)
    child_env[jobenv.FAILURES] = str(failures_file)
    # As in an activated environment: tools that requirements.txt installed are found by name.
    child_env['PATH'] = os.pathsep.join(filter(None, [str(python.parent), env.get('PATH')]))
    with open(stdout_file, 'wb') as out, open(stderr_file, 'wb') as err:
        try:
            proc = subprocess.Popen(
                [str(python), ENTRY_POINT, str(src), str(dst)],
                cwd=package_folder,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            return JobResult(ok=False, exit_status=None, stdout='', stderr=f'cannot start {python}: {exc}')
        timed_out, stopped = _wait(proc, time_limit, stop)
        status = proc.wait()

    failures = _read_failures(failures_file)
    return JobResult(
        ok=status == 0 and not failures and not timed_out and not stopped,
        exit_status=status,
        stdout=_tail(stdout_file),
        stderr=_tail(stderr_file),
        timed_out=timed_out,
        failures=failures,
        stopped=stopped,
    )


def upload_subdirs(event: dict[str, Any]) -> list[PurePosixPath]:
    """The folders of the event's Files records, which the entry point finds ready in ``DST/uploads``."""
    data = event.get('data') if isinstance(event, dict) else None
    found: list[PurePosixPath] = []
    for record in data if isinstance(data, list) else []:
        if not isinstance(record, dict) or record.get('destinationTable') != 'Files':
            continue
        subdir = record.get('subdir')
        if not isinstance(subdir, str):
            continue
        path = PurePosixPath(subdir)
        if path.is_absolute() or '..' in path.parts:
            raise ConsumerError(f'refused: Files record {record.get("_id")} has subdir {subdir!r} outside uploads/')
        if path.parts and path not in found:
            found.append(path)
    return found


def _wait(proc: subprocess.Popen[bytes], time_limit: float, stop: Optional[threading.Event]) -> tuple[bool, bool]:
    """Wait for the entry point's exit, the time limit or ``stop``, then kill its group: (timed_out, stopped)."""
    deadline = time.monotonic() + time_limit
    timed_out = stopped = False
    while True:
        # WNOWAIT leaves the exited leader unreaped, so its process group id cannot be reused before killpg.
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        if stop is not None and stop.is_set():
            stopped = True
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        if stop is not None:
            stop.wait(POLL)
        else:
            time.sleep(POLL)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is empty: nothing left behind
    return timed_out, stopped


def _read_failures(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding='utf-8', errors='replace')
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def _tail(path: Path) -> str:
    with open(path, 'rb') as source:
        source.seek(max(0, path.stat().st_size - TAIL_BYTES))
        return source.read().decode('utf-8', errors='replace')
