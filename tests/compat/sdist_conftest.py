"""conftest.py for running pacifica-notifications 0.5.2's own test suite against our package.

``run_0_5_2_suite.sh`` copies this file into the unpacked 0.5.2 sdist as
``tests/conftest.py``.  (It is not named ``conftest.py`` here, so that running
our own suite never loads it.)  It is harness, not product: it changes none of
the suite's tests, only

1. a Celery 4 -> Celery 5 shim for ``celery.bin.celery.main``.  The suite calls
   Celery 4's ``main(argv)`` (tests/common_test.py) with argv such as::

       ['celery', '-A', 'pacifica.notifications.tasks', 'worker', '--pool', 'solo',
        '--quiet', '-b', 'redis://...']
       ['celery', '-A', 'pacifica.notifications.tasks', 'control', '-b', URL, 'shutdown']
       ['celery', '-A', 'pacifica.notifications.tasks', '-b', URL, '--force', 'purge']

   Celery 4 moved options to where they belonged; Celery 5's ``main()`` takes no
   argv, and its click group wants the global options (``-A``, ``-b``,
   ``--quiet``...) before the sub-command and the sub-command's own options
   (``--force`` of ``purge``) after it.  The shim reorders the argv and runs
   Celery 5's click group in standalone mode, which (like Celery 4's ``main``)
   always ends by raising ``SystemExit``.  It is installed when this conftest is
   imported, i.e. before pytest imports the test modules (which do
   ``from celery.bin.celery import main as celery_main``).

2. a per-test timeout (pytest-timeout, signal method) so that one hung test (a
   worker thread that never stops) fails instead of hanging the run; the
   harness also puts a timeout on the whole run.

3. a results file (``COMPAT_RESULTS``, JSON lines) written as each test
   finishes, which the harness summarises, even if the run is killed.

4. at the very end, if threads the suite started (Celery worker threads) are
   still running, their stacks are printed, they are recorded as a problem in
   the results file, and the process exits anyway, so the run cannot hang at
   interpreter exit waiting for them.
"""

import json
import os
import sys
import threading
import time
import traceback

import celery.bin.celery as _celery_cli
import click
import pytest

# ---------------------------------------------------------------------------
# 1. Celery 4 command line -> Celery 5


def _global_options():
    """Return (options taking a value, flag options) of Celery 5's ``celery`` group."""
    with_value, flags = set(), set()
    for param in _celery_cli.celery.params:
        if not isinstance(param, click.Option):
            continue
        names = list(param.opts) + list(param.secondary_opts)
        (flags if param.is_flag else with_value).update(names)
    return with_value, flags


def celery4_argv_to_celery5(argv):
    """Reorder a Celery 4 ``celery`` argv (``argv[0]`` is the program) into Celery 5 args.

    Global options go first (wherever Celery 4 accepted them), then the
    sub-command, then everything else in its original order (so ``--force``
    given before ``purge`` ends up after it).
    """
    with_value, flags = _global_options()
    commands = set(_celery_cli.celery.commands)
    global_args, rest, command = [], [], None
    args = list(argv[1:])
    i = 0
    while i < len(args):
        token = args[i]
        name = token.split('=', 1)[0]
        if name in with_value:
            take = 1 if '=' in token else 2
            global_args.extend(args[i : i + take])
            i += take
        elif token in flags:
            global_args.append(token)
            i += 1
        elif command is None and token in commands:
            command = token
            i += 1
        else:
            rest.append(token)
            i += 1
    return global_args + ([command] if command else []) + rest


def celery4_main(argv=None):
    """Celery 4's ``celery.bin.celery.main(argv)``, run by Celery 5; always raises SystemExit."""
    argv = list(sys.argv if argv is None else argv)
    args = celery4_argv_to_celery5(argv)
    sys.__stderr__.write('[compat-shim] celery {} -> celery {}\n'.format(' '.join(argv[1:]), ' '.join(args)))
    sys.__stderr__.flush()
    _celery_cli.celery.main(args=args, prog_name='celery', standalone_mode=True, auto_envvar_prefix='CELERY')
    raise SystemExit(0)  # click's standalone mode exits by itself; be sure of it


_celery_cli.main = celery4_main

#: The suite runs the worker in a thread, so the shim's SystemExit(0) ends that
#: thread; pytest >= 6.2 reports any exception ending a thread, even this one
#: (Python itself ignores it).  Only that exact case is silenced.
_WORKER_EXIT_0 = (
    r'ignore:(?s)Exception in thread \S+ \(run_celery_worker\)\n.*\nSystemExit. 0\n'
    r':pytest.PytestUnhandledThreadExceptionWarning'
)


def pytest_configure(config):
    config.addinivalue_line('filterwarnings', _WORKER_EXIT_0)


# ---------------------------------------------------------------------------
# 2. per-test timeouts

#: Seconds a test may take (setup + call + teardown): the suite's slowest
#: legitimate test waits ~3 s for a worker and 10 s for deliveries.
TEST_TIMEOUT = float(os.environ.get('COMPAT_TEST_TIMEOUT', '120'))
#: cmd_test.py's class setup builds a virtualenv and installs
#: pacifica-notifications==0.2.3 and psycopg2 (compiled) into it.
CMD_TEST_TIMEOUT = float(os.environ.get('COMPAT_CMD_TEST_TIMEOUT', '600'))


def pytest_collection_modifyitems(config, items):
    """Give each test a timeout, unless pytest-timeout is missing or one was given on the command line."""
    if not config.pluginmanager.hasplugin('timeout'):
        sys.__stderr__.write('[compat-shim] pytest-timeout is not installed: no per-test timeout\n')
        return
    for item in items:
        if item.get_closest_marker('timeout') is None:
            limit = CMD_TEST_TIMEOUT if item.nodeid.split('::')[0].endswith('cmd_test.py') else TEST_TIMEOUT
            item.add_marker(pytest.mark.timeout(limit, method='signal'))


# ---------------------------------------------------------------------------
# 3. results file

_RESULTS = os.environ.get('COMPAT_RESULTS')


def _record(entry):
    if not _RESULTS:
        return
    with open(_RESULTS, 'a', encoding='utf-8') as handle:
        handle.write(json.dumps(entry) + '\n')


def pytest_collection_finish(session):
    """Record every collected test, so one that never reports counts as not run."""
    for item in session.items:
        _record({'nodeid': item.nodeid, 'when': 'collected', 'outcome': 'collected'})


def pytest_collectreport(report):
    """A module that fails to import is a failure too."""
    if report.failed:
        _record(
            {'nodeid': report.nodeid, 'when': 'collect', 'outcome': 'failed', 'message': str(report.longrepr)[-3000:]}
        )


def _short_reason(report):
    crash = getattr(report.longrepr, 'reprcrash', None)
    if crash is not None:
        return crash.message.splitlines()[0][:300] if crash.message else ''
    return str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ''


def pytest_runtest_logreport(report):
    """Record each phase (setup, call, teardown) of each test as it ends."""
    entry = {
        'nodeid': report.nodeid,
        'when': report.when,
        'outcome': report.outcome,
        'duration': round(report.duration, 2),
    }
    if report.outcome != 'passed':
        entry['reason'] = _short_reason(report)
    _record(entry)


# ---------------------------------------------------------------------------
# 4. no hang at exit on threads the suite left running

_EXIT_STATUS = [None]
#: Frames shown per leftover thread (a Celery worker's stack is ~30 deep).
STACK_FRAMES = int(os.environ.get('COMPAT_STACK_FRAMES', '12'))


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS[0] = int(exitstatus)


def _running_threads():
    """Threads other than the main one that still run code, as (ident, name, daemon, frame).

    ``threading.enumerate()`` is not enough: when a ``join()`` is interrupted
    (a pytest-timeout in the suite's tearDown), Python 3.11 may mark the
    thread as stopped although it still runs; ``sys._current_frames()`` tells.
    """
    main = threading.main_thread().ident
    known = {t.ident: t for t in threading.enumerate()}
    known.update(getattr(threading, '_active', {}))
    found = []
    for ident, frame in sys._current_frames().items():  # pylint: disable=protected-access
        if ident in (main, threading.get_ident()):
            continue
        thread = known.get(ident)
        found.append((ident, thread.name if thread else '?', bool(thread and thread.daemon), frame))
    return found


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """If non-daemon threads still run, show where they are and exit without waiting for them."""
    deadline = time.monotonic() + 5
    while True:
        alive = [t for t in _running_threads() if not t[2]]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not alive:
        return
    out = sys.__stderr__
    out.write(
        f'\n[compat-shim] {len(alive)} non-daemon thread(s) still running at the end of the run '
        '(e.g. a Celery worker that a test could not stop); their stacks:\n'
    )
    for ident, name, _daemon, frame in alive:
        out.write(f'--- thread {name!r} (ident {ident}), innermost {STACK_FRAMES} frames:\n')
        out.write(''.join(traceback.format_stack(frame)[-STACK_FRAMES:]))
    _record(
        {
            'nodeid': '<session>',
            'when': 'exit',
            'outcome': 'leftover-threads',
            'threads': [name for _ident, name, _daemon, _frame in alive],
        }
    )
    out.write('[compat-shim] exiting without waiting for them\n')
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # pylint: disable=broad-except
            pass
    os._exit(_EXIT_STATUS[0] if _EXIT_STATUS[0] is not None else 1)  # pylint: disable=protected-access
