"""running.run_job with real entry points run by this interpreter: exits, time limit, stop, failures, folders."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from pacifica_notifications_consumer.running import TAIL_BYTES, JobResult, run_job

pytestmark = pytest.mark.fast

EVENT = {
    'eventID': 'e-1',
    'data': [
        {'destinationTable': 'Transactions._id', 'value': 7},
        {'destinationTable': 'Files', '_id': 1, 'name': 'a.txt', 'subdir': 'raw/day1'},
        {'destinationTable': 'Files', '_id': 2, 'name': 'b.txt', 'subdir': ''},
        {'destinationTable': 'Files', '_id': 3, 'name': 'c.txt', 'subdir': 'notes'},
    ],
}


def package(tmp_path: Path, main: str) -> Path:
    folder = tmp_path / 'pkg'
    folder.mkdir(exist_ok=True)
    (folder / '__main__.py').write_text(main)
    return folder


def run(tmp_path: Path, main: str, time_limit: float = 30.0, stop: threading.Event | None = None) -> JobResult:
    return run_job(
        tmp_path / 'job', EVENT, package(tmp_path, main), Path(sys.executable), time_limit, dict(os.environ), stop=stop
    )


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan may wait a moment to be reaped by init)."""
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def test_success_sees_its_layout(tmp_path: Path) -> None:
    main = """
import json, os, sys
src, dst = sys.argv[1:]
event = json.load(open(os.path.join(src, 'notification.json')))
print(event['eventID'], os.path.isabs(src), os.path.isdir(os.path.join(src, 'downloads')), os.getcwd())
for root, dirs, files in sorted(os.walk(os.path.join(dst, 'uploads'))):
    print(os.path.relpath(root, dst))
"""
    result = run(tmp_path, main)
    assert result.ok and result.exit_status == 0 and not result.timed_out and not result.stopped
    lines = result.stdout.splitlines()
    assert lines[0] == f'e-1 True True {tmp_path / "pkg"}'
    assert lines[1:] == ['uploads', 'uploads/notes', 'uploads/raw', 'uploads/raw/day1']
    assert json.loads((tmp_path / 'job' / 'SRC' / 'notification.json').read_text()) == EVENT
    assert (tmp_path / 'job' / 'stdout.txt').read_text().startswith('e-1')


def test_exit_status_and_stderr_kept(tmp_path: Path) -> None:
    result = run(tmp_path, "import sys\nsys.stderr.write('x' * 10000 + 'the reason\\n')\nsys.exit(3)\n")
    assert not result.ok and result.exit_status == 3 and not result.timed_out
    assert len(result.stderr.encode()) == TAIL_BYTES and result.stderr.endswith('the reason\n')
    assert (tmp_path / 'job' / 'stderr.txt').stat().st_size == 10011


def test_failures_file_fails_a_zero_exit(tmp_path: Path) -> None:
    main = """
import json, os
with open(os.environ['PACIFICA_CONSUMER_FAILURES'], 'a') as out:
    out.write(json.dumps({'type': 'TransferError', 'message': 'cart failed'}) + '\\n')
"""
    result = run(tmp_path, main)
    assert result.exit_status == 0 and not result.ok
    assert [json.loads(line)['message'] for line in result.failures] == ['cart failed']


def test_time_limit_kills_the_group(tmp_path: Path) -> None:
    """The entry point and a grandchild that ignores SIGTERM both go when the time is up."""
    main = """
import os, signal, subprocess, sys, time
stubborn = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'
child = subprocess.Popen([sys.executable, '-c', stubborn])
open(os.path.join(sys.argv[2], '..', 'child.pid'), 'w').write(str(child.pid))
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(60)
"""
    started = time.monotonic()
    result = run(tmp_path, main, time_limit=1.0)
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.ok and not result.stopped
    assert result.exit_status == -9
    child = int((tmp_path / 'job' / 'child.pid').read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_leftover_background_process_is_killed(tmp_path: Path) -> None:
    main = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
open(os.path.join(sys.argv[2], '..', 'child.pid'), 'w').write(str(child.pid))
"""
    result = run(tmp_path, main)
    assert result.ok
    child = int((tmp_path / 'job' / 'child.pid').read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_stop_event(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    result = run(tmp_path, 'import time\ntime.sleep(60)\n', stop=stop)
    assert time.monotonic() - started < 10
    assert result.stopped and not result.timed_out and not result.ok


def test_escaping_subdir_is_refused(tmp_path: Path) -> None:
    event = {'data': [{'destinationTable': 'Files', '_id': 9, 'subdir': '../../outside'}]}
    folder = package(tmp_path, "open('ran', 'w')\n")
    result = run_job(tmp_path / 'job', event, folder, Path(sys.executable), 30.0, dict(os.environ))
    assert not result.ok and result.exit_status is None
    assert "subdir '../../outside'" in result.stderr
    assert not (folder / 'ran').exists()


def test_rerun_starts_clean(tmp_path: Path) -> None:
    main = "import os, sys\nopen(os.path.join(sys.argv[2], 'uploads', 'out.txt'), 'x').write('once')\n"
    assert run(tmp_path, main).ok
    assert run(tmp_path, main).ok  # 'x' mode: fails if the last try's file were still there
