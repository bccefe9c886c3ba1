"""The consumer runner end to end: the seed's example consumer.zip, run by ``start-pacifica-notifications-consumer``.

Real processes throughout: this service (API and worker), the runner (which
makes the consumer's virtual environment with pip), the entry point, and the
cart and ingest stand-ins of ``consumer/tests/pacifica_fakes.py`` (real HTTP
servers speaking those services' protocols); and once with the real Pacifica
services of ``consumer/tests/pacifica_real.py``, the metadata service's events
coming through this service.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import requests

from .conftest import FIXTURES
from .procs import script, wait_until

REPO = Path(__file__).resolve().parent.parent
SEED_CONSUMER = FIXTURES / 'seed_consumer'


def consumer_test_module(name: str) -> ModuleType:
    """A helper module of consumer/tests (a folder, not a package), loaded once under its own name."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / 'consumer' / 'tests' / f'{name}.py')
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


fakes = consumer_test_module('pacifica_fakes')
real = consumer_test_module('pacifica_real')

#: The seed's fixture event under a new id; its third Files record has no ``_id``, which download()
#: refuses (consumer/tests/test_transfer.py): here it gets one.
EVENT = json.loads((FIXTURES / 'events.json').read_text(encoding='utf-8'))


def fresh_event() -> dict:
    event = copy.deepcopy(EVENT)
    event['eventID'] = uuid.uuid4().hex
    files = [record for record in event['data'] if record.get('destinationTable') == 'Files']
    for number, record in enumerate(files):
        record.setdefault('_id', 900 + number)
    return event


def build_zip(folder: Path, **changes: str | None) -> Path:
    """consumer.zip from the seed's example, members replaced (text) or left out (None) by ``changes``."""
    path = folder / 'consumer.zip'
    with zipfile.ZipFile(path, 'w') as archive:
        for member in SEED_CONSUMER.iterdir():
            if member.name != 'README' and member.name not in changes:
                archive.writestr(member.name, member.read_text(encoding='utf-8'))
        for name, text in changes.items():
            if text is not None:
                archive.writestr(name, text)
    return path


def command(zip_path: Path, stack, user: str, work: Path, *extra: str) -> list[str]:
    """The runner's command line for this stack and user."""
    return [
        script('start-pacifica-notifications-consumer'),
        str(zip_path),
        *('--producer-url', stack.api.url, '--user', user, '--listen', '127.0.0.1:0', '--work-dir', str(work)),
        *extra,
    ]


class Runner:
    """``start-pacifica-notifications-consumer`` in a process of its own, its output kept."""

    def __init__(self, zip_path: Path, stack, user: str, cart_url: str, ingest_url: str, work: Path):
        self.log = work.parent / f'{work.name}.log'
        self.work = work
        self.proc = subprocess.Popen(
            command(zip_path, stack, user, work, '--cart-url', cart_url, '--ingest-url', ingest_url, '--grace', '5'),
            stdout=self.log.open('w'),
            stderr=subprocess.STDOUT,
            env=stack.env,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float = 240) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None or text in self.output(), self.output()
            return text in self.output()

        wait_until(seen, timeout, interval=0.2, what=f'{text!r} in the runner output')

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(60)

    def crash(self) -> None:
        """Kill the runner as a crash would, and remove what it extracted (it had no chance to)."""
        self.proc.kill()
        self.proc.wait(60)
        for line in self.output().splitlines():
            if 'extracting' in line:
                shutil.rmtree(Path(line.split()[-1]).parent, ignore_errors=True)


def subscriptions_of(stack, user: str) -> list[dict]:
    return requests.get(stack.api.url + '/eventmatch', headers={'Http-Remote-User': user}, timeout=10).json()


@pytest.fixture
def peers():
    event = fresh_event()
    archive = {str(record['_id']): b'foo\n' for record in event['data'] if record.get('destinationTable') == 'Files'}
    with fakes.FakeCart(archive) as cart, fakes.FakeIngest() as ingest:
        yield event, cart, ingest


def test_the_seed_example_runs_end_to_end(stack, case, peers, tmp_path):
    user, _path = case
    event, cart, ingest = peers
    runner = Runner(build_zip(tmp_path), stack, user, cart.url, ingest.url, tmp_path / 'work')
    try:
        runner.wait_for('running: subscription')
        (sub,) = subscriptions_of(stack, user)
        assert sub['jsonpath'] == (SEED_CONSUMER / 'jsonpath2.txt').read_text().strip()
        stack.post_event(event)
        runner.wait_for('job 1: done')
    finally:
        status = runner.stop()
    assert status == 0, runner.output()
    (transaction,) = ingest.transactions
    assert set(transaction.files.values()) == {b'FOO\n'}
    assert transaction.attributes()['Transactions.project'] == '1236é'
    assert subscriptions_of(stack, user) == []
    assert not any(Path(line.split()[-1]).exists() for line in runner.output().splitlines() if 'extracting' in line)


def test_a_failing_entry_point_is_recorded_with_its_stderr(stack, case, peers, tmp_path):
    user, _path = case
    event, cart, ingest = peers
    main = 'import sys\nprint("cannot work on this", file=sys.stderr)\nsys.exit(3)\n'
    runner = Runner(build_zip(tmp_path, **{'__main__.py': main}), stack, user, cart.url, ingest.url, tmp_path / 'work')
    try:
        runner.wait_for('running: subscription')
        stack.post_event(event)
        runner.wait_for('job 1: failed')
    finally:
        runner.stop()
    assert 'job 1: failed (exit 3) cannot work on this' in runner.output()
    import sqlite3

    with sqlite3.connect(tmp_path / 'work' / 'jobs.sqlite3') as db:
        ((state, status, stderr),) = db.execute('SELECT state, exit_status, stderr FROM job').fetchall()
    assert (state, status) == ('failed', 3) and 'cannot work on this' in stderr
    assert ingest.transactions == []


@pytest.mark.parametrize(
    'change, words',
    [
        ({'__main__.py': None}, '__main__.py'),
        ({'jsonpath2.txt': '$[?(@.broken'}, 'jsonpath'),
        ({'../evil.txt': 'x'}, 'leaves the package folder'),
        ({'requirements.txt': 'no-such-package-xyz-123\n'}, 'no-such-package-xyz-123'),
    ],
)
def test_a_bad_zip_is_one_line_and_leaves_nothing(stack, case, tmp_path, change, words):
    user, _path = case
    done = subprocess.run(
        command(build_zip(tmp_path, **change), stack, user, tmp_path / 'work'),
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith('start-pacifica-notifications-consumer: error: ') and words in line, line
    assert subscriptions_of(stack, user) == []
    assert not (tmp_path / 'work').exists()
    extracted = [text.split()[-1] for text in done.stdout.splitlines() if 'extracting' in text]
    assert extracted and not any(Path(folder).parent.exists() for folder in extracted)


SLOW_MAIN = """import os, time
if os.environ.get('SLOW_FLAG_FILE') and os.path.exists(os.environ['SLOW_FLAG_FILE']):
    time.sleep(120)
print('worked')
"""


def test_a_job_stopped_at_shutdown_runs_at_the_next_start(stack, case, peers, tmp_path):
    user, _path = case
    event, cart, ingest = peers
    flag = tmp_path / 'slow'
    flag.write_text('')
    stack.env['SLOW_FLAG_FILE'] = str(flag)
    try:
        zip_path = build_zip(tmp_path, **{'__main__.py': SLOW_MAIN})
        first = Runner(zip_path, stack, user, cart.url, ingest.url, tmp_path / 'work')
        try:
            first.wait_for('running: subscription')
            stack.post_event(event)
            first.wait_for('job 1: started')
        finally:
            assert first.stop() == 0
        assert 'job 1: stopped at shutdown; queued for the next start' in first.output()
        assert subscriptions_of(stack, user) == []
        flag.unlink()
        second = Runner(zip_path, stack, user, cart.url, ingest.url, tmp_path / 'work')
        try:
            second.wait_for('job 1: done')
            assert '1 job(s) queued' in second.output()
            assert len(subscriptions_of(stack, user)) == 1  # made again
        finally:
            second.stop()
    finally:
        del stack.env['SLOW_FLAG_FILE']


def test_after_a_crash_the_subscription_is_live_again_and_what_was_missed_is_processed(stack, case, peers, tmp_path):
    """Killed, the runner could not unsubscribe: the service then disabled the subscription whose target was gone."""
    user, _path = case
    event, cart, ingest = peers
    zip_path = build_zip(tmp_path)
    first = Runner(zip_path, stack, user, cart.url, ingest.url, tmp_path / 'work')
    try:
        first.wait_for('running: subscription')
    finally:
        first.crash()
    (sub,) = subscriptions_of(stack, user)
    stack.post_event(event)
    wait_until(lambda: subscriptions_of(stack, user)[0]['disabled'], 60, what='the subscription disabled')
    second = Runner(zip_path, stack, user, cart.url, ingest.url, tmp_path / 'work')
    try:
        second.wait_for('job 1: done')
        assert 'the last run did not stop; asked again for what was missed since' in second.output()
        (again,) = subscriptions_of(stack, user)
        assert (again['uuid'], again['disabled'], again['error']) == (sub['uuid'], None, None)
        assert again['target_url'] != sub['target_url']  # the new run listens on another port
    finally:
        assert second.stop() == 0
    (transaction,) = ingest.transactions
    assert set(transaction.files.values()) == {b'FOO\n'}


#: The example's jsonpath2.txt asks for the seed's source; the real metadata service sends a URL there.
REAL_SOURCE_JSONPATH = (
    '$[?(@["eventID"] and (@["eventType"] = "org.pacifica.metadata.ingest"))]'
    '["data"][*][?((@["destinationTable"] = "Files") and (@["mimetype"] = "text/plain"))]["_id"]'
)


@pytest.fixture
def real_pacifica(stack, tmp_path):
    """The real Pacifica services (see consumer/tests/pacifica_real.py), the metadata service posting to this stack."""
    try:
        python = real.services_python()
    except real.IndexUnreachable as exc:
        pytest.skip(f'the real Pacifica services cannot be installed here: {exc}')
    missing = real.postgres_missing()
    if missing:
        pytest.skip(f'the ingest services keep their data in PostgreSQL: {missing}')
    services = real.PacificaServices(python, tmp_path / 'pacifica', notify_url=stack.api.url + '/receive')
    try:
        yield services, services.cart(), services.ingest()
    finally:
        services.close()


def test_the_seed_example_runs_on_real_pacifica_events(stack, case, real_pacifica, tmp_path):
    """An instrument's upload, the metadata service's event through this service, the example run, its output filed.

    The output's own event comes back to the consumer too (its files are text) and is dropped by its mark.
    """
    from pacifica_notifications_consumer.transfer import MARK_KEY, upload

    user, _path = case
    services, cart_url, pacifica = real_pacifica
    runner = Runner(
        build_zip(tmp_path, **{'jsonpath2.txt': REAL_SOURCE_JSONPATH}),
        stack,
        user,
        cart_url,
        pacifica.ingest,
        tmp_path / 'work',
    )
    try:
        runner.wait_for('running: subscription')
        (sub,) = subscriptions_of(stack, user)
        instrument = tmp_path / 'instrument'
        (instrument / 'uploads' / 'run1').mkdir(parents=True)
        (instrument / 'uploads' / 'run1' / 'notes.txt').write_bytes(b'measured at noon\n')
        attributes = {'Transactions.submitter': 10, 'Transactions.project': '1234a', 'Transactions.instrument': 54}
        source = upload(instrument, attributes, {}, ingest_url=pacifica.ingest, consumer_id='an-instrument').get()
        runner.wait_for('job 1: done')

        def deliveries() -> list[dict]:
            url = f'{stack.api.url}/eventmatch/{sub["uuid"]}/deliveries'
            return requests.get(url, headers={'Http-Remote-User': user}, timeout=10).json()['items']

        both = ['delivered', 'delivered']
        wait_until(lambda: [entry['state'] for entry in deliveries()] == both, 120, what="the output's event delivered")
        output_uuid = deliveries()[0]['event_uuid']  # newest first
        output = requests.get(f'{stack.api.url}/events/{output_uuid}', headers={'Http-Remote-User': user}, timeout=10)
        event = output.json()['event']
    finally:
        status = runner.stop()
    assert status == 0, runner.output()
    assert 'job 2' not in runner.output()  # the output's event carries the consumer's mark: dropped
    records = {record['destinationTable']: record for record in event['data'] if 'value' in record}
    assert records['Transactions._id']['value'] != source['job_id']
    key_values = {r['key']: r['value'] for r in event['data'] if r['destinationTable'] == 'TransactionKeyValue'}
    assert str(key_values['Transactions._id']) == str(source['job_id']) and MARK_KEY in key_values
    (filed,) = [r for r in event['data'] if r['destinationTable'] == 'Files']
    content = requests.get(f'{pacifica.archive}/{filed["_id"]}', timeout=30).content
    assert (filed['subdir'], filed['name'], content) == ('run1', 'notes.txt', b'MEASURED AT NOON\n'), services.logs()
