"""download() and upload() against the real Pacifica services from PyPI (see ``pacifica_real``).

pacifica-archiveinterface 0.4.2, pacifica-cartd 0.7.0 and its Celery worker for ``download()``;
pacifica-ingest 0.4.1 and its worker, pacifica-uniqueid 0.5.1, pacifica-metadata 0.13.0 (PostgreSQL)
and pacifica-policy 0.8.3 for ``upload()``; the original example entry point, unchanged, between
them.  Real processes, no stand-ins; waits are polls with deadlines.  The services' environment is
built on the first run (about 25 s) and cached.  These tests skip only when it is not built and no
package index can be reached to build it, and the upload tests when no PostgreSQL was named
(``PACIFICA_TEST_POSTGRES_URL``, which CI sets) and none listens at the local default.  Anything
else that keeps the services from running fails the tests, with the services' logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
from pacifica_real import (
    IndexUnreachable,
    IngestStack,
    PacificaServices,
    postgres_missing,
    services_python,
)
from transfer_helpers import CONSUMER, EXAMPLE_MAIN, FIXTURE, settle, write_src

from pacifica_notifications_consumer.running import upload_subdirs
from pacifica_notifications_consumer.transfer import (
    FAILURES_ENV,
    MARK_KEY,
    TransferError,
    carries_mark,
    download,
    upload,
)

TEXT = 'Hello, Pacifica!\nA second line, with numbers 123 and an accent: é.\n'.encode()
PICTURE = bytes(range(256)) * 5  # not UTF-8: must travel as bytes
#: What the metadata service holds (pacifica_real.SEED): this user may file for this project and instrument.
ATTRIBUTES = {'Transactions.submitter': 10, 'Transactions.proposal': '1234a', 'Transactions.instrument': 54}
TIMEOUT = 120.0  # for one cart or one ingest job: far more than they take
HTTP = 30.0

#: File ids put straight into the archive: far above the ids the uniqueid service hands out to ingest.
_next_file_id = iter(range(9_000_000_001, 9_000_100_000))


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope='session')
def pacifica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PacificaServices]:
    """The services of this session (each started on first use), stopped at its end."""
    try:
        python = services_python()
    except IndexUnreachable as exc:
        pytest.skip(f'the real Pacifica services cannot be installed here: {exc}')
    services = PacificaServices(python, tmp_path_factory.mktemp('pacifica-services'))
    try:
        yield services
    finally:
        services.close()


@pytest.fixture(scope='session')
def cart(pacifica: PacificaServices) -> str:
    return pacifica.cart()


@pytest.fixture(scope='session')
def stack(pacifica: PacificaServices) -> IngestStack:
    missing = postgres_missing()
    if missing:
        pytest.skip(f'the ingest services keep their data in PostgreSQL: {missing}')
    return pacifica.ingest()


# --- helpers --------------------------------------------------------------------------------------


def sha1(content: bytes) -> str:
    return hashlib.sha1(content).hexdigest()


def put_into_archive(archive: str, content: bytes) -> int:
    """File ``content`` in the archive interface as the ingest service does (``PUT /<id>``); its id."""
    file_id = next(_next_file_id)
    answer = requests.put(
        f'{archive}/{file_id}',
        data=content,
        headers={'Content-Type': 'application/octet-stream', 'Last-Modified': formatdate(1_600_000_000, usegmt=True)},
        timeout=HTTP,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()['total_bytes'] == len(content)
    return file_id


def event_for(files: dict[str, tuple[int, bytes]]) -> dict[str, Any]:
    """The captured ingest event with its Files records replaced: path -> (file id, content)."""
    event = json.loads(FIXTURE.read_text(encoding='utf-8'))
    template = next(r for r in event['data'] if r['destinationTable'] == 'Files')
    event['data'] = [r for r in event['data'] if r['destinationTable'] not in ('Files', 'FileKeyValue')]
    for path, (file_id, content) in files.items():
        subdir, _, name = path.rpartition('/')
        record = {**template, '_id': file_id, 'name': name, 'subdir': subdir + '/' if subdir else ''}
        event['data'].append({**record, 'size': len(content), 'hashtype': 'sha1', 'hashsum': sha1(content)})
    return event


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def metadata(stack: IngestStack, path: str, **params: Any) -> Any:
    answer = requests.get(f'{stack.metadata}/{path}', params=params, timeout=HTTP)
    assert answer.status_code == 200, answer.text
    return answer.json()


def transaction(stack: IngestStack, transaction_id: int) -> dict[str, Any]:
    """What the metadata service holds for a transaction: its files, submitter/project/instrument, key-values."""
    files = metadata(stack, 'files', transaction_id=transaction_id, recursion_depth=0)
    [sip] = metadata(stack, 'transsip', _id=transaction_id, recursion_depth=0)
    return {
        'files': {f'{f["subdir"]}/{f["name"]}'.lstrip('/'): f for f in files},
        'sip': {key: sip[key] for key in ('submitter', 'project', 'instrument')},
        'key_values': metadata(stack, f'tkvinfo/kv_for_transaction/{transaction_id}'),
    }


def from_archive(stack: IngestStack, file_id: int) -> bytes:
    answer = requests.get(f'{stack.archive}/{file_id}', timeout=HTTP)
    assert answer.status_code == 200, answer.text
    return answer.content


# --- download -------------------------------------------------------------------------------------


def test_download_fetches_files_put_into_the_real_archive(
    tmp_path: Path, pacifica: PacificaServices, cart: str
) -> None:
    archive = pacifica.archive()
    text_id, picture_id = put_into_archive(archive, TEXT), put_into_archive(archive, PICTURE)
    src = write_src(tmp_path, event_for({'a/b/foo.txt': (text_id, TEXT), 'a/plot.png': (picture_id, PICTURE)}))

    event = settle(download(src, cart_url=cart, timeout=TIMEOUT))

    assert isinstance(event, dict), f'{event!r}\n{pacifica.logs()}'
    assert files_under(src) == {
        'downloads/a/b/foo.txt': TEXT,
        'downloads/a/plot.png': PICTURE,
        'notification.json': (src / 'notification.json').read_bytes(),
    }
    proposals = [r['value'] for r in event['data'] if r['destinationTable'] == 'Transactions.proposal']
    assert proposals == ['1234a']
    # download() deleted its cart: cartd removed the staged copies from its volume.
    assert [p for p in pacifica.cart_volume.rglob('*') if p.is_file()] == [], pacifica.logs()


def test_download_of_a_file_whose_hash_differs_fails_with_the_cart_services_reason(
    tmp_path: Path, pacifica: PacificaServices, cart: str
) -> None:
    file_id = put_into_archive(pacifica.archive(), TEXT)
    event = event_for({'a/b/foo.txt': (file_id, TEXT)})
    event['data'][-1]['hashsum'] = sha1(b'something else')
    src = write_src(tmp_path, event)

    error = settle(download(src, cart_url=cart, timeout=TIMEOUT))

    assert isinstance(error, TransferError), f'{error!r}\n{pacifica.logs()}'
    assert 'File hash does not match provided hash' in str(error)
    assert 'the archive holds a file whose content differs' in str(error)  # our hint
    assert files_under(src / 'downloads') == {}


def test_download_of_a_file_the_archive_lacks_fails_with_the_cart_services_reason(
    tmp_path: Path, pacifica: PacificaServices, cart: str
) -> None:
    missing = next(_next_file_id)
    src = write_src(tmp_path, event_for({'lost.txt': (missing, TEXT)}))

    error = settle(download(src, cart_url=cart, timeout=TIMEOUT))

    assert isinstance(error, TransferError), f'{error!r}\n{pacifica.logs()}'
    assert 'the cart service could not gather the files: Failed to pull file(Failed to stage with error' in str(error)
    # The archive interface's error page, which cartd passes on whole, comes down to the line naming the file.
    assert 'No such file or directory' in str(error) and f"{missing}')" in str(error), str(error)
    assert files_under(src / 'downloads') == {}


# --- upload ---------------------------------------------------------------------------------------


def test_upload_creates_a_transaction_the_metadata_service_lists(
    tmp_path: Path, pacifica: PacificaServices, stack: IngestStack
) -> None:
    dst = tmp_path / 'dst'
    contents = {
        'top.txt': TEXT,
        'a/b/plot.png': PICTURE,
        'a/b/résumé notes.txt': b'non-ASCII names travel too\n',
        'data/inner.csv': b'x,y\n1,2\n',  # a folder of its own named "data": ingest strips only the bundle's
    }
    for path, content in contents.items():
        (dst / 'uploads' / path).parent.mkdir(parents=True, exist_ok=True)
        (dst / 'uploads' / path).write_bytes(content)

    state = settle(upload(dst, ATTRIBUTES, {'Tag': 'real', 'zero': 0}, ingest_url=stack.ingest, consumer_id='c-real'))

    assert isinstance(state, dict), f'{state!r}\n{pacifica.logs()}'
    assert (state['state'], state['task'], state['complete']) == ('OK', 'ingest metadata', True), state
    held = transaction(stack, state['job_id'])
    assert sorted(held['files']) == sorted(contents), held['files']
    for path, content in contents.items():
        record = held['files'][path]
        assert (record['size'], record['hashtype'], record['hashsum']) == (len(content), 'sha1', sha1(content))
        assert from_archive(stack, record['_id']) == content
    assert held['files']['a/b/plot.png']['mimetype'] == 'image/png'
    assert held['sip'] == {'submitter': 10, 'project': '1234a', 'instrument': 54}
    assert held['key_values'] == {'Tag': 'real', 'zero': '0', MARK_KEY: 'c-real'}
    # The metadata service's own event for it carries the mark, so the runner would drop it.
    event = stack.events.ingest_event(state['job_id'])
    assert carries_mark(event, 'c-real')
    assert not carries_mark(event, 'another-consumer')


def test_upload_the_policy_service_refuses_fails_with_its_reason(
    tmp_path: Path, pacifica: PacificaServices, stack: IngestStack
) -> None:
    dst = tmp_path / 'dst'
    (dst / 'uploads').mkdir(parents=True)
    (dst / 'uploads' / 'out.txt').write_bytes(TEXT)
    attributes = {**ATTRIBUTES, 'Transactions.proposal': '5678b'}  # exists, but the user is no member

    error = settle(upload(dst, attributes, {}, ingest_url=stack.ingest, consumer_id='c-real', timeout=TIMEOUT))

    assert isinstance(error, TransferError), f'{error!r}\n{pacifica.logs()}'
    assert "failed at 'Policy Validation'" in str(error)
    assert 'Precondition Failed: Invalid values for project (5678b) not in user instrument list' in str(error)
    job = int(str(error).split('ingest job ')[1].split()[0])
    assert metadata(stack, 'files', transaction_id=job, recursion_depth=0) == []


# --- both, through the original example entry point -----------------------------------------------


def test_the_example_entry_point_turns_a_real_ingest_into_a_new_transaction(
    tmp_path: Path, pacifica: PacificaServices, cart: str, stack: IngestStack
) -> None:
    """Upload files, take the metadata service's event for them, and run the example on it as the runner would."""
    first = tmp_path / 'first'
    (first / 'uploads' / 'a' / 'b').mkdir(parents=True)
    (first / 'uploads' / 'a' / 'b' / 'foo.txt').write_bytes(TEXT)
    (first / 'uploads' / 'plot.png').write_bytes(PICTURE)
    state = settle(upload(first, ATTRIBUTES, {'Tag': 'input'}, ingest_url=stack.ingest, consumer_id='an-instrument'))
    assert isinstance(state, dict) and state['complete'], f'{state!r}\n{pacifica.logs()}'
    source = state['job_id']
    event = stack.events.ingest_event(source)

    job = tmp_path / 'job'
    src, dst, failures = job / 'src', job / 'dst', job / 'failures.jsonl'
    write_src(job, event)
    for subdir in upload_subdirs(event):  # what the runner prepares
        (dst / 'uploads' / subdir).mkdir(parents=True, exist_ok=True)
    (job / '__main__.py').write_text(EXAMPLE_MAIN, encoding='utf-8')
    env = {
        **os.environ,
        'PYTHONPATH': str(CONSUMER),
        'PACIFICA_CART_URL': cart,
        'PACIFICA_INGEST_URL': stack.ingest,
        'PACIFICA_CONSUMER_ID': 'consumer-example',
        FAILURES_ENV: str(failures),
    }
    run = subprocess.run(
        [sys.executable, '__main__.py', str(src), str(dst)],
        cwd=job,
        env=env,
        capture_output=True,
        text=True,
        timeout=2 * TIMEOUT,
        check=False,
    )

    assert (run.returncode, run.stderr) == (0, ''), f'{run.stdout}\n{run.stderr}\n{pacifica.logs()}'
    assert not failures.exists(), failures.read_text()
    assert not src.exists() and not dst.exists()  # the example removes both once uploaded
    output = stack.events.wait_for(
        lambda e: (
            isinstance(e, dict)
            and e.get('eventType') == 'org.pacifica.metadata.ingest'
            and carries_mark(e, 'consumer-example')
        )
    )
    [new_id] = [r['value'] for r in output['data'] if r['destinationTable'] == 'Transactions._id']
    held = transaction(stack, new_id)
    assert sorted(held['files']) == ['a/b/foo.txt']  # the plain-text file only
    assert from_archive(stack, held['files']['a/b/foo.txt']['_id']) == TEXT.decode().upper().encode()
    assert held['sip'] == {'submitter': 10, 'project': '1234a', 'instrument': 54}
    assert held['key_values'] == {'Transactions._id': str(source), MARK_KEY: 'consumer-example'}
