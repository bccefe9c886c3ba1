"""download() and upload() against stand-ins of Pacifica's cart and ingest services, and the original example.

The stand-ins are real HTTP servers (see ``pacifica_fakes``); the example entry point runs in a
subprocess exactly as the runner starts it: ``python __main__.py SRC DST``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from jsonpath2 import Path as JSONPath
from pacifica_fakes import HASH_MISMATCH, FakeCart, FakeIngest
from transfer_helpers import CONSUMER, EXAMPLE_MAIN, FIXTURE, settle, write_src

from pacifica_notifications_consumer import transfer
from pacifica_notifications_consumer.transfer import (
    FAILURES_ENV,
    MARK_KEY,
    TransferError,
    carries_mark,
    download,
    project_to_proposal,
    proposal_to_project,
    upload,
)

SEED = CONSUMER.parent.parent / 'shared' / 'seed' / '000_db9faffe92a495d0.txt'

TEXT = b'Hello, Pacifica!\nA second line, with numbers 123.\n'
PICTURE = bytes(range(256))  # not UTF-8: must travel as bytes


# --- helpers --------------------------------------------------------------------------------------


def ingest_event() -> dict[str, Any]:
    """The captured event, its text file given real content, plus a picture in another folder."""
    event = json.loads(FIXTURE.read_text(encoding='utf-8'))
    text = next(r for r in event['data'] if r['destinationTable'] == 'Files')
    text.update(size=len(TEXT), hashsum=hashlib.sha1(TEXT).hexdigest())
    event['data'].append(
        {
            **text,
            '_id': 2002,
            'name': 'plot.png',
            'subdir': 'a/',
            'mimetype': 'image/png',
            'size': len(PICTURE),
            'hashsum': hashlib.sha1(PICTURE).hexdigest(),
        }
    )
    return event


ARCHIVE = {'2001': TEXT, '2002': PICTURE}


def table(event: dict[str, Any], destination: str) -> list[Any]:
    query = f'$["data"][*][?(@["destinationTable"] = "{destination}")]["value"]'
    return [match.current_value for match in JSONPath.parse_str(query).match(event)]


@pytest.fixture
def cart() -> Any:
    with FakeCart(ARCHIVE) as server:
        yield server


@pytest.fixture
def ingest() -> Any:
    with FakeIngest() as server:
        yield server


# --- download -------------------------------------------------------------------------------------


@pytest.mark.fast
def test_download_puts_each_file_at_downloads_subdir_name(tmp_path: Path, cart: FakeCart) -> None:
    src = write_src(tmp_path, ingest_event())
    event = settle(download(src, cart_url=cart.url))
    assert isinstance(event, dict), event
    assert (src / 'downloads' / 'a' / 'b' / 'foo.txt').read_bytes() == TEXT
    assert (src / 'downloads' / 'a' / 'plot.png').read_bytes() == PICTURE
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob('*') if p.is_file()) == [
        'downloads/a/b/foo.txt',
        'downloads/a/plot.png',
        'notification.json',
    ]
    [fileids] = cart.posted
    assert {item['id']: item['path'] for item in fileids} == {2001: 'a/b/foo.txt', 2002: 'a/plot.png'}
    assert all(item['hashtype'] == 'sha1' and len(item['hashsum']) == 40 for item in fileids)
    assert [method for method, _ in cart.requests][-1] == 'DELETE'
    assert cart.carts == {}


@pytest.mark.fast
def test_download_waits_while_the_cart_is_staging(tmp_path: Path, cart: FakeCart) -> None:
    cart.staging_heads = 3
    src = write_src(tmp_path, ingest_event())
    assert isinstance(settle(download(src, cart_url=cart.url)), dict)
    assert [method for method, _ in cart.requests].count('HEAD') == 4


@pytest.mark.fast
def test_download_takes_the_cart_url_from_the_environment(
    tmp_path: Path, cart: FakeCart, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_src(tmp_path, ingest_event())
    monkeypatch.setenv('PACIFICA_CART_URL', cart.url)
    assert isinstance(settle(download(src)), dict)
    monkeypatch.delenv('PACIFICA_CART_URL')
    error = settle(download(write_src(tmp_path / 'again', ingest_event())))
    assert isinstance(error, TransferError)
    assert 'PACIFICA_CART_URL' in str(error)


@pytest.mark.fast
def test_trap_download_offers_project_as_proposal(tmp_path: Path, cart: FakeCart) -> None:
    """Pacifica renamed proposals to projects in 2019: the example's proposal lookup would raise IndexError."""
    raw = ingest_event()
    with pytest.raises(IndexError):
        table(raw, 'Transactions.proposal')[0]  # what the example does with today's events

    event = settle(download(write_src(tmp_path, raw), cart_url=cart.url))
    assert table(event, 'Transactions.proposal') == table(event, 'Transactions.project') == ['1234a']
    assert table(event, 'Transactions._id') == [1001]
    stored = json.loads((tmp_path / 'src' / 'notification.json').read_text(encoding='utf-8'))
    assert stored == raw  # the event on disk stays as delivered


@pytest.mark.fast
def test_project_and_proposal_mapping_each_way() -> None:
    event = ingest_event()
    offered = project_to_proposal(event)
    assert offered is not event
    assert table(event, 'Transactions.proposal') == []  # the input is not changed
    assert project_to_proposal(offered) == offered  # an event with a proposal record is left alone
    assert proposal_to_project({'Transactions.proposal': '1234a', 'Transactions.instrument': 54}) == {
        'Transactions.project': '1234a',
        'Transactions.instrument': 54,
    }
    assert proposal_to_project({'Transactions.proposal': 'p', 'Transactions.project': 'p'}) == {
        'Transactions.project': 'p'
    }
    with pytest.raises(TransferError, match='disagree'):
        proposal_to_project({'Transactions.proposal': 'p', 'Transactions.project': 'q'})


@pytest.mark.fast
def test_trap_files_records_without_id_or_hash_are_one_clear_error(tmp_path: Path, cart: FakeCart) -> None:
    event = ingest_event()
    files = [r for r in event['data'] if r['destinationTable'] == 'Files']
    del files[0]['_id']
    del files[1]['hashsum']
    error = settle(download(write_src(tmp_path, event), cart_url=cart.url))
    assert isinstance(error, TransferError)
    assert str(error) == 'Files records the cart service cannot fetch: a/b/foo.txt: no _id; a/plot.png: no hashsum'
    assert cart.requests == []  # refused before asking the cart service


@pytest.mark.fast
def test_trap_a_hash_mismatch_is_a_readable_failure(tmp_path: Path, cart: FakeCart) -> None:
    cart.archive['2001'] = b'not what the event says\n'
    error = settle(download(write_src(tmp_path, ingest_event()), cart_url=cart.url))
    assert isinstance(error, TransferError)
    assert HASH_MISMATCH in str(error)
    assert 'differs from the hashsum in the event' in str(error)
    assert not (tmp_path / 'src' / 'downloads' / 'a' / 'b' / 'foo.txt').exists()
    assert cart.carts == {}  # the failed cart is deleted too


@pytest.mark.fast
def test_trap_a_record_pointing_outside_downloads_is_refused(tmp_path: Path, cart: FakeCart) -> None:
    event = ingest_event()
    next(r for r in event['data'] if r['destinationTable'] == 'Files')['subdir'] = 'a/../../../'
    error = settle(download(write_src(tmp_path, event), cart_url=cart.url))
    assert isinstance(error, TransferError)
    assert 'leaves the folder' in str(error)
    assert cart.requests == []


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = '') -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, 0 if kind != tarfile.REGTYPE else 4
    return info, b'evil'


@pytest.mark.fast
@pytest.mark.parametrize(
    'member',
    [
        _member('data/../../evil.txt'),
        _member('/tmp/evil.txt'),
        _member('data/a/b/foo.txt', tarfile.SYMTYPE, '../../../../evil.txt'),
    ],
    ids=['dot-dot', 'absolute', 'symlink'],
)
def test_trap_extraction_refuses_members_outside_downloads(
    tmp_path: Path, cart: FakeCart, member: tuple[tarfile.TarInfo, bytes]
) -> None:
    cart.extra_members.append(member)
    error = settle(download(write_src(tmp_path, ingest_event()), cart_url=cart.url))
    assert isinstance(error, TransferError)
    assert 'refused' in str(error)
    assert not list(tmp_path.rglob('evil.txt'))


@pytest.mark.fast
def test_extraction_does_not_follow_a_symlink_already_in_downloads(tmp_path: Path, cart: FakeCart) -> None:
    src = write_src(tmp_path, ingest_event())
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    (src / 'downloads').mkdir()
    (src / 'downloads' / 'a').symlink_to(elsewhere)
    error = settle(download(src, cart_url=cart.url))
    assert isinstance(error, TransferError)
    assert 'resolves outside' in str(error)
    assert list(elsewhere.iterdir()) == []


# --- upload ---------------------------------------------------------------------------------------


def write_uploads(folder: Path) -> Path:
    dst = folder / 'dst'
    (dst / 'uploads' / 'a' / 'b').mkdir(parents=True)
    (dst / 'uploads' / 'a' / 'b' / 'FOO.txt').write_bytes(TEXT.upper())
    (dst / 'uploads' / 'raw.bin').write_bytes(PICTURE)
    return dst


@pytest.mark.fast
def test_upload_files_the_uploads_folder_as_a_transaction(
    tmp_path: Path, ingest: FakeIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('PACIFICA_CONSUMER_ID', 'consumer-0123')
    attributes = {'Transactions.instrument': 54, 'Transactions.project': '1234a', 'Transactions.submitter': 10}
    state = settle(upload(write_uploads(tmp_path), attributes, {'Tag': 'upper'}, ingest_url=ingest.url))
    assert isinstance(state, dict), state
    assert (state['state'], state['task'], state['complete']) == ('OK', 'ingest metadata', True)
    [done] = ingest.transactions
    assert state['job_id'] == done.job_id
    assert done.files == {'a/b/FOO.txt': TEXT.upper(), 'raw.bin': PICTURE}  # read and sent as bytes
    assert done.attributes() == {**attributes, 'Transactions._id': done.job_id}
    assert done.key_values() == {'Tag': 'upper', MARK_KEY: 'consumer-0123'}
    records = {r['name']: r for r in done.file_records()}
    assert records['FOO.txt']['subdir'] == 'a/b'
    assert records['raw.bin']['subdir'] == ''
    assert records['FOO.txt']['mimetype'] == 'text/plain'
    assert records['raw.bin']['mimetype'] == 'application/octet-stream'
    assert records['raw.bin']['size'] == len(PICTURE)
    assert records['raw.bin']['hashsum'] == hashlib.sha1(PICTURE).hexdigest()


@pytest.mark.fast
def test_a_subdir_named_data_survives_ingest(tmp_path: Path, ingest: FakeIngest) -> None:
    """Ingest drops a leading ``data`` folder from each path; a consumer's own ``data/...`` must stay."""
    folder = tmp_path / 'uploads' / 'data' / 'a'
    folder.mkdir(parents=True)
    (folder / 'x.txt').write_bytes(b'x')
    (tmp_path / 'uploads' / 'top.txt').write_bytes(b't')
    assert isinstance(settle(upload(tmp_path, {}, {}, ingest_url=ingest.url)), dict)
    [done] = ingest.transactions
    assert done.files == {'data/a/x.txt': b'x', 'top.txt': b't'}
    assert {r['name']: r['subdir'] for r in done.file_records()} == {'x.txt': 'data/a', 'top.txt': ''}


def test_trap_upload_sends_proposal_as_project_and_never_an_id(tmp_path: Path, ingest: FakeIngest) -> None:
    attributes = {'Transactions.proposal': '1234a', 'Transactions._id': 1001, 'Transactions.instrument': 54}
    state = settle(upload(write_uploads(tmp_path), attributes, {'Transactions._id': 1001}, ingest_url=ingest.url))
    assert isinstance(state, dict), state
    [done] = ingest.transactions
    with tarfile.open(fileobj=io.BytesIO(ingest.bundles[0])) as bundle:
        sent = json.loads(bundle.extractfile('metadata.txt').read())  # type: ignore[union-attr]
    assert [r for r in sent if r['destinationTable'] in ('Transactions._id', 'Transactions.proposal')] == []
    assert done.attributes() == {
        'Transactions.project': '1234a',
        'Transactions.instrument': 54,
        'Transactions._id': done.job_id,  # ingest's own
    }
    assert done.key_values() == {'Transactions._id': 1001, MARK_KEY: 'unknown'}  # where it came from


@pytest.mark.fast
def test_trap_the_mark_lets_the_runner_drop_its_own_output(tmp_path: Path, ingest: FakeIngest) -> None:
    """An output of the input's type would trigger the same consumer forever, but for the mark."""
    settle(upload(write_uploads(tmp_path), {'Transactions.project': 'p'}, {}, ingest_url=ingest.url, consumer_id='c1'))
    [done] = ingest.transactions
    caused = {**ingest_event(), 'data': done.metadata}  # the event metadata sends for this transaction
    assert carries_mark(caused, 'c1')
    assert not carries_mark(caused, 'c2')
    assert not carries_mark(ingest_event(), 'c1')
    orm_event = {'eventType': 'org.pacifica.metadata.orm', 'data': {'obj_type': 'transactions', 'method': 'insert'}}
    assert not carries_mark(orm_event, 'c1')
    assert not carries_mark({'data': ['text', None, {'destinationTable': 'TransactionKeyValue'}]}, 'c1')
    assert not carries_mark('not an event', 'c1')


@pytest.mark.fast
def test_a_failed_ingest_job_rejects_with_its_task_and_reason(tmp_path: Path) -> None:
    with FakeIngest(policy=lambda metadata, user: f'{user} may not upload to project p') as ingest:
        error = settle(upload(write_uploads(tmp_path), {'Transactions.project': 'p'}, {}, ingest_url=ingest.url))
    assert isinstance(error, TransferError)
    assert "failed at 'Policy Validation': root may not upload to project p" in str(error)
    assert ingest.transactions == []


@pytest.mark.fast
def test_upload_without_an_uploads_folder_or_ingest_url_says_so(tmp_path: Path, ingest: FakeIngest) -> None:
    error = settle(upload(tmp_path, {}, {}, ingest_url=ingest.url))
    assert isinstance(error, TransferError)
    assert 'uploads: no such folder' in str(error)
    error = settle(upload(write_uploads(tmp_path), {}, {}))
    assert isinstance(error, TransferError)
    assert 'PACIFICA_INGEST_URL' in str(error)
    assert ingest.bundles == []


@pytest.mark.fast
@pytest.mark.parametrize(
    'key_values, words',
    [
        ({'k': None}, "key-value 'k': must be text or a number, not NoneType"),
        ({'k': [1, 2]}, "key-value 'k': must be text or a number, not list"),
        ({'k': True}, "key-value 'k': must be text or a number, not bool"),
        ({'k': 'x' * 256}, "key-value 'k': longer than the 255 characters"),
        ({'k' * 256: 'v'}, 'a key-value key: longer than the 255 characters'),
    ],
)
def test_a_key_value_the_metadata_service_cannot_store_is_refused_before_sending(
    tmp_path: Path, ingest: FakeIngest, key_values: dict, words: str
) -> None:
    error = settle(upload(write_uploads(tmp_path), {'Transactions.project': 'p'}, key_values, ingest_url=ingest.url))
    assert isinstance(error, TransferError) and words in str(error), error
    assert ingest.bundles == []


# --- rejections that promise 2.3 would lose -------------------------------------------------------


@pytest.mark.fast
def test_trap_a_failing_callback_is_reported_on_stderr_and_in_the_failures_file(
    tmp_path: Path, cart: FakeCart, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failures = tmp_path / 'failures.jsonl'
    monkeypatch.setenv(FAILURES_ENV, str(failures))
    chained = download(write_src(tmp_path, ingest_event()), cart_url=cart.url).then(
        lambda event: table(event, 'Transactions.nothing')[0]
    )
    assert chained.is_rejected  # and nobody raised: the entry point would exit 0
    records = transfer.report_unhandled()
    assert [r['type'] for r in records] == ['IndexError']
    assert [json.loads(line) for line in failures.read_text(encoding='utf-8').splitlines()] == records
    assert 'unhandled rejection' in capsys.readouterr().err
    assert transfer.report_unhandled() == []  # each reported once


@pytest.mark.fast
def test_a_rejection_passed_down_a_chain_is_reported_once(tmp_path: Path, cart: FakeCart) -> None:
    cart.archive['2001'] = b'changed\n'
    download(write_src(tmp_path, ingest_event()), cart_url=cart.url).then(lambda event: event).then(print)
    records = transfer.report_unhandled()
    assert len(records) == 1
    assert HASH_MISMATCH in records[0]['message']


@pytest.mark.fast
def test_an_upload_failing_inside_a_download_callback_is_reported_once(tmp_path: Path, cart: FakeCart) -> None:
    """The example's shape: download().then(callback returning upload().then(...)); the upload fails."""
    src = write_src(tmp_path, ingest_event())
    download(src, cart_url=cart.url).then(lambda event: upload(tmp_path / 'nowhere', {}, {}).then(lambda state: True))
    [record] = transfer.report_unhandled()
    assert record['type'] == 'TransferError'
    assert 'uploads: no such folder' in record['message']


@pytest.mark.fast
def test_a_handled_rejection_is_not_a_failure(tmp_path: Path, cart: FakeCart) -> None:
    cart.archive['2001'] = b'changed\n'
    seen: list[BaseException] = []
    download(write_src(tmp_path, ingest_event()), cart_url=cart.url).then(lambda event: event).catch(seen.append)
    assert len(seen) == 1
    assert transfer.report_unhandled() == []


# --- the original example entry point, as the runner runs it --------------------------------------


def test_the_embedded_example_is_the_seed_verbatim() -> None:
    if not SEED.is_file():
        pytest.skip(f'{SEED} is not here')
    seed = SEED.read_text(encoding='utf-8')
    last = 'download(orig_event_path).then(download_did_fulfill)'
    start, end = seed.index('#!/usr/bin/env python3'), seed.index(last) + len(last)
    assert seed[start:end] + '\n' == EXAMPLE_MAIN


def run_example(
    folder: Path, cart: FakeCart, ingest: FakeIngest, event: dict[str, Any]
) -> tuple[subprocess.CompletedProcess[str], Path, Path, Path]:
    """What the runner does for one job: SRC with the event, DST's folders, then ``python __main__.py SRC DST``."""
    src, dst, failures = folder / 'src', folder / 'dst', folder / 'failures.jsonl'
    write_src(folder, event)
    (dst / 'uploads' / 'a' / 'b').mkdir(parents=True)  # the runner makes each Files subdir (running.upload_subdirs)
    (folder / '__main__.py').write_text(EXAMPLE_MAIN, encoding='utf-8')
    env = {
        **os.environ,
        'PYTHONPATH': str(CONSUMER),
        'PACIFICA_CART_URL': cart.url,
        'PACIFICA_INGEST_URL': ingest.url,
        'PACIFICA_CONSUMER_ID': 'consumer-example',
        FAILURES_ENV: str(failures),
    }
    command = [sys.executable, '__main__.py', str(src), str(dst)]
    run = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False)
    return run, src, dst, failures


def test_the_example_entry_point_runs_unchanged(tmp_path: Path, cart: FakeCart, ingest: FakeIngest) -> None:
    run, src, dst, failures = run_example(tmp_path, cart, ingest, ingest_event())
    assert (run.returncode, run.stderr) == (0, '')
    assert not failures.exists()
    [done] = ingest.transactions
    assert done.files == {'a/b/foo.txt': TEXT.upper()}  # the plain-text file only, upper-cased
    assert done.attributes() == {
        'Transactions.instrument': 54,
        'Transactions.project': '1234a',
        'Transactions.submitter': 10,
        'Transactions._id': done.job_id,
    }
    assert done.key_values() == {'Transactions._id': 1001, MARK_KEY: 'consumer-example'}
    assert not src.exists()
    assert not dst.exists()  # the example removes both once uploaded


def test_trap_a_failing_example_exits_0_but_the_failure_is_recorded(
    tmp_path: Path, cart: FakeCart, ingest: FakeIngest
) -> None:
    cart.archive['2001'] = b'the archive copy changed\n'
    run, src, _, failures = run_example(tmp_path, cart, ingest, ingest_event())
    assert run.returncode == 0  # promise 2.3 swallowed it: the entry point cannot tell
    [record] = [json.loads(line) for line in failures.read_text(encoding='utf-8').splitlines()]
    assert record['type'] == 'TransferError'
    assert HASH_MISMATCH in record['message']
    assert 'unhandled rejection' in run.stderr
    assert ingest.transactions == []
    assert src.exists()  # kept for a look: nothing removed it
