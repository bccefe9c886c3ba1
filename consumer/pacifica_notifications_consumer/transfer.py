"""``download(SRC)`` and ``upload(DST, ...)``: what a consumer's ``__main__.py`` fetches and files through.

Both return a ``promise.Promise``, as the original design's example entry point expects, and do their
work before returning: promise 2.3 runs callbacks synchronously, so the entry point's chain has run
by the time its last line is reached.

Our own small clients, not ``pacifica-downloader`` 0.4.1 and ``pacifica-uploader`` 0.3.1.  Those two
install and import beside ``pacifica.notifications`` on Python 3.11 (checked in throwaway virtual
environments, editable and regular installs, with and without ``pacifica-namespace``; no other
Python was available), but the downloader does not do what a consumer needs: it extracts the cart
into ``downloads/data/...`` rather than ``downloads/<subdir>/<name>``, with an unfiltered
``extractall`` that writes wherever a member's name points; it turns a failed cart (a hash
mismatch) into a bare ``AssertionError``; it sends a Files record without ``_id`` as ``"id":
false``, which the cart service answers with a schema-validation 500; and it stops waiting at the
first status other than ``staging``, so a cart still ``waiting`` or ``bundling`` fails.  The
uploader works, but its ``MetaData.is_valid`` refuses any falsy value (a key-value of 0 or ""), and
using it for half the job would add an old-style ``pacifica`` namespace package for forty lines.
So we speak their wire formats with ``requests``, which the package already depends on:

- cart service (pacifica-cartd): ``POST {cart}/{uuid}`` with ``{"fileids": [{"id", "path",
  "hashtype", "hashsum"}]}`` (201); ``HEAD {cart}/{uuid}`` until ``X-Pacifica-Status: ready`` (204),
  ``error`` (500, reason in ``X-Pacifica-Message``) or 404; ``GET {cart}/{uuid}?filename=data.tar``,
  a tar of one top folder holding each file at its ``path``; ``DELETE {cart}/{uuid}``.
- ingest service (pacifica-ingest): ``POST {ingest}/upload`` with a tar of ``data/<subdir>/<name>``
  members and a last ``metadata.txt`` (the JSON list of metadata records); it answers the job's
  state, which ``GET {ingest}/get_state?job_id=N`` reports until ``complete`` (or ``FAILED``).  The
  ingest service asks the policy service itself, so ``upload()`` needs no policy URL.

Both are tested against the real services from PyPI (``tests/test_real_pacifica.py``:
pacifica-cartd 0.7.0 and pacifica-archiveinterface 0.4.2; pacifica-ingest 0.4.1 with
pacifica-uniqueid, pacifica-metadata and pacifica-policy), and against the stand-ins of
``tests/pacifica_fakes.py`` for what the real ones cannot be made to do on demand.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import io
import json
import mimetypes
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any, Callable, Optional

import requests
from promise import Promise

from . import jobenv

#: The key of the key-value ``upload()`` marks its transaction with; its value is the consumer's id.
MARK_KEY = 'pacifica-notifications-consumer'
#: Environment variable naming a file that gets one JSON line per rejection no handler received.
FAILURES_ENV = jobenv.FAILURES

PROJECT = 'Transactions.project'
PROPOSAL = 'Transactions.proposal'
#: (connect, read) seconds for one HTTP request; waiting for a cart or an ingest job has its own limit.
HTTP_TIMEOUT = (10.0, 300.0)


class TransferError(Exception):
    """Fetching from or filing to Pacifica failed; the message says what and why."""


# --- rejections: promise 2.3 drops an exception raised in a callback, so the entry point exits 0 ----

_lock = threading.Lock()
_unhandled: dict[int, tuple[BaseException, Optional[TracebackType]]] = {}


def _forget(reason: BaseException) -> None:
    with _lock:
        _unhandled.pop(id(reason), None)


class TrackedPromise(Promise):
    """A ``Promise`` that remembers each rejection until a rejection handler (or ``get()``) receives it.

    Every promise chained from ``download()`` or ``upload()`` is one of these (``then`` creates
    promises of its own class), so an exception raised in the entry point's callbacks is kept too.
    Handled rejections are forgotten: a consumer that catches and recovers is not a failure.
    """

    def _reject(self, reason: Exception, tb: Optional[TracebackType] = None) -> None:
        with _lock:
            _unhandled[id(reason)] = (reason, tb)
        super()._reject(reason, tb)

    def _then(self, did_fulfill: Optional[Callable[..., Any]] = None, did_reject: Any = None) -> Promise:
        if callable(did_reject):
            handler = did_reject

            def did_reject(reason: Exception) -> Any:
                _forget(reason)
                return handler(reason)

        return super()._then(did_fulfill, did_reject)

    def get(self, timeout: Optional[float] = None) -> Any:
        try:
            return super().get(timeout)
        except Exception as exc:
            _forget(exc)  # raised into the caller's code: it is theirs now
            raise


def report_unhandled() -> list[dict[str, str]]:
    """Report every rejection no handler received, on stderr and in ``$PACIFICA_CONSUMER_FAILURES``.

    Runs at interpreter exit, so the runner can fail a job whose entry point exited 0 anyway.
    Returns the records reported (each once).
    """
    with _lock:
        pending = list(_unhandled.values())
        _unhandled.clear()
    records = []
    for reason, tb in pending:
        text = ''.join(traceback.format_exception(type(reason), reason, tb or reason.__traceback__))
        print(f'pacifica_notifications_consumer: unhandled rejection: {text}', end='', file=sys.stderr, flush=True)
        records.append({'type': type(reason).__name__, 'message': str(reason), 'traceback': text})
    path = os.environ.get(FAILURES_ENV)
    if records and path:
        try:
            with open(path, 'a', encoding='utf-8') as out:
                out.writelines(json.dumps(record) + '\n' for record in records)
        except OSError as exc:
            print(f'pacifica_notifications_consumer: cannot write {path}: {exc}', file=sys.stderr, flush=True)
    return records


atexit.register(report_unhandled)


# --- projects were called proposals until 2019; the original example still asks for proposals ------


def project_to_proposal(event: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``event`` where each ``Transactions.project`` record is also offered as ``Transactions.proposal``.

    Today's events carry ``project``; the original example entry point looks up ``proposal`` and
    would raise ``IndexError``.  An event that already has a ``proposal`` record is left as it is.
    """
    event = copy.deepcopy(event)
    data = event.get('data')
    if not isinstance(data, list) or any(_table(record) == PROPOSAL for record in data):
        return event
    event['data'] = []
    for record in data:
        event['data'].append(record)
        if _table(record) == PROJECT:
            event['data'].append({**record, 'destinationTable': PROPOSAL})
    return event


def proposal_to_project(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` with ``Transactions.proposal`` renamed ``Transactions.project``, which ingest knows."""
    renamed = dict(attributes)
    if PROPOSAL in renamed:
        proposal = renamed.pop(PROPOSAL)
        if renamed.setdefault(PROJECT, proposal) != proposal:
            raise TransferError(f'{PROPOSAL} {proposal!r} and {PROJECT} {renamed[PROJECT]!r} disagree')
    return renamed


# --- the mark that keeps a consumer from being triggered by its own output -------------------------


def carries_mark(event: Any, consumer_id: str) -> bool:
    """Whether ``event`` is about a transaction that ``upload()`` made for ``consumer_id``.

    Output files of the input's type would otherwise trigger the same consumer again, forever.
    """
    data = event.get('data') if isinstance(event, dict) else None
    return isinstance(data, list) and any(
        _table(record) == 'TransactionKeyValue'
        and record.get('key') == MARK_KEY
        and str(record.get('value')) == consumer_id
        for record in data
    )


# --- paths ----------------------------------------------------------------------------------------


def _table(record: Any) -> Any:
    return record.get('destinationTable') if isinstance(record, dict) else None


def relative_path(subdir: Any, name: Any) -> PurePosixPath:
    """Where a Files record goes under ``downloads/``; refuses what would leave it (``..``)."""
    if not isinstance(name, str) or not isinstance(subdir or '', str):
        raise TransferError(f'Files record with subdir {subdir!r} and name {name!r}: both must be strings')

    def split(path: str) -> list[str]:
        return [part for part in path.replace('\\', '/').split('/') if part not in ('', '.')]

    parts = split(subdir or '') + split(name)
    if not split(name) or '..' in parts:
        raise TransferError(f'Files record {subdir!r}/{name!r}: the path leaves the folder it belongs in')
    return PurePosixPath(*parts)


def _inside(folder: Path, relative: PurePosixPath) -> Path:
    """``folder/relative``, refused if it resolves outside ``folder`` (``..``, absolute, a symlink)."""
    if relative.is_absolute() or '..' in relative.parts or not relative.parts:
        raise TransferError(f'{relative}: outside {folder}, refused')
    target = folder / relative
    base = os.path.realpath(folder)
    if os.path.commonpath([base, os.path.realpath(target)]) != base:
        raise TransferError(f'{relative}: resolves outside {folder}, refused')
    return target


# --- download -------------------------------------------------------------------------------------


def download(src: str | os.PathLike[str], *, cart_url: Optional[str] = None, timeout: float = 3600.0) -> Promise:
    """Fetch every file of the transaction in ``SRC/notification.json`` into ``SRC/downloads/<subdir>/<name>``.

    Resolves to the event (with ``Transactions.project`` also offered as ``Transactions.proposal``);
    rejects with :class:`TransferError` saying what went wrong.  ``cart_url`` defaults to
    ``$PACIFICA_CART_URL``; ``timeout`` bounds the wait for the cart service to stage the files.
    """
    return TrackedPromise(
        lambda resolve, _: resolve(_download(Path(src), cart_url or os.environ.get(jobenv.CART_URL, ''), timeout))
    )


def file_records(event: dict[str, Any]) -> dict[PurePosixPath, dict[str, Any]]:
    """The event's Files records by their path under ``downloads/``; one error naming every unusable one."""
    records, problems = {}, []
    for record in event.get('data') or []:
        if _table(record) != 'Files':
            continue
        missing = [key for key in ('_id', 'name', 'hashtype', 'hashsum') if record.get(key) in (None, '')]
        label = '/'.join(str(part).strip('/') for part in (record.get('subdir'), record.get('name', '?')) if part)
        if missing:
            problems.append(f'{label}: no {", ".join(missing)}')
        elif record['hashtype'] not in hashlib.algorithms_available:
            problems.append(f'{label}: unknown hashtype {record["hashtype"]!r}')
        else:
            try:
                records[relative_path(record.get('subdir'), record['name'])] = record
            except TransferError as exc:
                problems.append(str(exc))
    if problems:
        raise TransferError('Files records the cart service cannot fetch: ' + '; '.join(problems))
    return records


def _download(src: Path, cart_url: str, timeout: float) -> dict[str, Any]:
    event = json.loads((src / 'notification.json').read_text(encoding='utf-8'))
    wanted = file_records(event)
    downloads = src / 'downloads'
    downloads.mkdir(parents=True, exist_ok=True)
    if wanted:  # the cart service never finishes a cart without files
        if not cart_url:
            raise TransferError(f'no cart service: set {jobenv.CART_URL} or pass cart_url=')
        cart = f'{cart_url.rstrip("/")}/{uuid.uuid4()}'
        with requests.Session() as http:
            fileids = [
                {'id': r['_id'], 'path': str(path), 'hashtype': r['hashtype'], 'hashsum': r['hashsum']}
                for path, r in wanted.items()
            ]
            answer = http.post(cart, json={'fileids': fileids}, timeout=HTTP_TIMEOUT)
            if answer.status_code != 201:
                raise TransferError(f'the cart service refused the cart ({answer.status_code}): {_why(answer)}')
            try:
                _wait_for_cart(http, cart, timeout)
                _extract_cart(http, cart, downloads, set(wanted))
            finally:
                try:
                    http.delete(cart, timeout=HTTP_TIMEOUT)  # it would stay on the cart service's disk
                except requests.RequestException:
                    pass
    return project_to_proposal(event)


def _wait_for_cart(http: requests.Session, cart: str, timeout: float) -> None:
    deadline, pause = time.monotonic() + timeout, 0.1
    while True:
        answer = http.head(cart, timeout=HTTP_TIMEOUT)
        status = answer.headers.get('X-Pacifica-Status', '')
        message = answer.headers.get('X-Pacifica-Message', '')
        if answer.status_code == 204 and status == 'ready':
            return
        if status == 'error' or answer.status_code >= 400:
            hint = ''
            if 'hash does not match' in message:
                hint = ' (the archive holds a file whose content differs from the hashsum in the event)'
            why = _cart_reason(message)
            raise TransferError(f'the cart service could not gather the files: {why or answer.status_code}{hint}')
        if time.monotonic() + pause > deadline:
            raise TransferError(f'the cart service is still {status or answer.status_code} after {timeout:g} s')
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _cart_reason(message: str, limit: int = 500) -> str:
    """A cart's error in one readable line.

    cartd passes on the archive interface's answer as it came: a JSON error
    page, quoted, about 3 KB with the traceback first.  Put in its place the
    exception it reports (its traceback's last line, which names the file).
    """
    start, end = message.find('"{'), message.rfind('}"')
    if 0 <= start < end:
        try:
            page = json.loads(json.loads(message[start : end + 2]))
            lines = [line for line in str(page.get('traceback') or '').splitlines() if line.strip()]
            message = message[:start] + (lines[-1].strip() if lines else str(page.get('message'))) + message[end + 2 :]
        except (ValueError, AttributeError):
            pass
    return message if len(message) <= limit else message[:limit] + '...'


def _extract_cart(http: requests.Session, cart: str, downloads: Path, wanted: set[PurePosixPath]) -> None:
    """Stream the cart's tar into ``downloads``, its top folder dropped; refuse members that would leave it."""
    with http.get(cart, params={'filename': 'data.tar'}, stream=True, timeout=HTTP_TIMEOUT) as answer:
        if answer.status_code != 200:
            raise TransferError(f'the cart service did not hand over the cart ({answer.status_code}): {_why(answer)}')
        answer.raw.decode_content = True
        received = set()
        with tarfile.open(fileobj=answer.raw, mode='r|') as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                relative = PurePosixPath(*name.parts[1:])  # below the top folder (``data``, or the cart's uid)
                if name.is_absolute() or '..' in name.parts:
                    raise TransferError(f'the cart holds {member.name!r}, outside {downloads}: refused')
                if member.isdir() or relative not in wanted:
                    continue
                source = tar.extractfile(member) if member.isfile() else None  # links are not followed
                if source is None:
                    raise TransferError(f'the cart holds {member.name!r}, which is not a regular file: refused')
                target = _inside(downloads, relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, open(target, 'wb') as out:
                    shutil.copyfileobj(source, out)
                received.add(relative)
    if wanted - received:
        raise TransferError('the cart lacks ' + ', '.join(sorted(map(str, wanted - received))))


# --- upload ---------------------------------------------------------------------------------------


def upload(
    dst: str | os.PathLike[str],
    attributes: Mapping[str, Any],
    key_values: Mapping[str, Any],
    *,
    ingest_url: Optional[str] = None,
    consumer_id: Optional[str] = None,
    timeout: float = 3600.0,
) -> Promise:
    """File ``DST/uploads/`` as a new transaction with ``attributes`` and ``key_values``; resolves to the job's state.

    ``attributes`` are ``Transactions.*`` fields (``proposal`` is sent as ``project``; ``_id`` is
    never sent, ingest assigns it).  The transaction also gets the key-value
    ``pacifica-notifications-consumer`` = the consumer's id (``$PACIFICA_CONSUMER_ID``), so the
    runner can drop the events it causes.  Rejects with :class:`TransferError` if ingest fails.
    """
    url = ingest_url or os.environ.get(jobenv.INGEST_URL, '')
    ident = consumer_id or os.environ.get(jobenv.CONSUMER_ID) or 'unknown'
    return TrackedPromise(lambda resolve, _: resolve(_upload(Path(dst), attributes, key_values, url, ident, timeout)))


def transaction_metadata(
    attributes: Mapping[str, Any], key_values: Mapping[str, Any], ident: str
) -> list[dict[str, Any]]:
    """The transaction's records for ``metadata.txt`` (the files' records are added as they are bundled)."""
    fields = proposal_to_project(attributes)
    fields.pop('Transactions._id', None)
    records = [{'destinationTable': table, 'value': value} for table, value in fields.items()]
    for key, value in key_values.items():
        _check_key_value(key, value)
    records += [
        {'destinationTable': 'TransactionKeyValue', 'key': key, 'value': value}
        for key, value in key_values.items()
        if key != MARK_KEY
    ]
    records.append({'destinationTable': 'TransactionKeyValue', 'key': MARK_KEY, 'value': ident})
    return records


#: The longest key or value the metadata service stores (a varchar(255) column).
KEY_VALUE_LIMIT = 255


def _check_key_value(key: Any, value: Any) -> None:
    """Refuse a key-value the metadata service cannot store, before anything is sent.

    The metadata service checks them only after ingest has filed the files in
    the archive, so a bad one would leave files there that no transaction lists.
    """
    for part, what in ((key, 'a key-value key'), (value, f'key-value {key!r}')):
        if isinstance(part, bool) or not isinstance(part, (str, int, float)):
            raise TransferError(f'{what}: must be text or a number, not {type(part).__name__}')
        if len(str(part)) > KEY_VALUE_LIMIT:
            raise TransferError(f'{what}: longer than the {KEY_VALUE_LIMIT} characters the metadata service keeps')


class _Hashing:
    """A binary file that hashes what is read from it, so each file is read once."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.sha1 = raw, hashlib.sha1()

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.sha1.update(chunk)
        return chunk


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), timezone.utc).replace(tzinfo=None).isoformat()


def bundle(uploads: Path, metadata: list[dict[str, Any]], out: IO[bytes]) -> None:
    """Write the ingest bundle: every file under ``uploads`` as ``data/<path>``, then ``metadata.txt``."""
    metadata = list(metadata)
    with tarfile.open(fileobj=out, mode='w|') as tar:
        for folder, dirs, names in os.walk(uploads):
            dirs.sort()
            for name in sorted(names):
                path = Path(folder, name)
                if not path.is_file():
                    continue
                relative = PurePosixPath(path.relative_to(uploads).as_posix())
                stat = path.stat()
                info = tarfile.TarInfo(f'data/{relative}')
                info.size, info.mtime = stat.st_size, int(stat.st_mtime)
                with open(path, 'rb') as raw:
                    hashing = _Hashing(raw)
                    tar.addfile(info, hashing)
                subdir = relative.parent.as_posix()
                metadata.append(
                    {
                        'destinationTable': 'Files',
                        'name': relative.name,
                        # As the tar member: ingest drops a leading "data" folder from both, so a
                        # subdir of its own that starts with "data/" survives (data/data/a -> data/a).
                        'subdir': 'data' if subdir == '.' else f'data/{subdir}',
                        'size': stat.st_size,
                        'mimetype': mimetypes.guess_type(relative.name)[0] or 'application/octet-stream',
                        'hashtype': 'sha1',
                        'hashsum': hashing.sha1.hexdigest(),
                        'ctime': _when(stat.st_ctime),
                        'mtime': _when(stat.st_mtime),
                    }
                )
        text = json.dumps(metadata).encode('utf-8')
        info = tarfile.TarInfo('metadata.txt')
        info.size, info.mtime = len(text), int(time.time())
        tar.addfile(info, io.BytesIO(text))


def _upload(
    dst: Path, attributes: Mapping[str, Any], key_values: Mapping[str, Any], url: str, ident: str, timeout: float
) -> dict[str, Any]:
    uploads = dst / 'uploads'
    if not uploads.is_dir():
        raise TransferError(f'{uploads}: no such folder (the files to upload go there)')
    if not url:
        raise TransferError(f'no ingest service: set {jobenv.INGEST_URL} or pass ingest_url=')
    metadata = transaction_metadata(attributes, key_values, ident)
    with tempfile.TemporaryFile() as tar, requests.Session() as http:
        bundle(uploads, metadata, tar)
        size = tar.tell()
        tar.seek(0)
        answer = http.post(
            f'{url.rstrip("/")}/upload',
            data=tar,
            headers={'Content-Type': 'application/octet-stream', 'Content-Length': str(size)},
            timeout=HTTP_TIMEOUT,
        )
        if answer.status_code != 200:
            raise TransferError(f'the ingest service refused the upload ({answer.status_code}): {_why(answer)}')
        state = _job_state(answer)
        deadline, pause = time.monotonic() + timeout, 0.1
        job = state['job_id']
        while not _finished(state):
            if time.monotonic() + pause > deadline:
                raise TransferError(f'ingest job {job} is still at {state.get("task")!r} after {timeout:g} s')
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
            answer = http.get(f'{url.rstrip("/")}/get_state', params={'job_id': job}, timeout=HTTP_TIMEOUT)
            if answer.status_code != 200:
                raise TransferError(f'the ingest service lost job {job} ({answer.status_code}): {_why(answer)}')
            state = _job_state(answer)
    if state.get('state') == 'FAILED':
        raise TransferError(f'ingest job {job} failed at {state.get("task")!r}: {state.get("exception")}')
    return state


def _job_state(answer: requests.Response) -> dict[str, Any]:
    try:
        state = answer.json()
    except ValueError:
        state = None
    if not isinstance(state, dict) or 'job_id' not in state:
        raise TransferError(f'the ingest service answered {answer.text[:300]!r}, not the state of a job')
    return state


def _finished(state: dict[str, Any]) -> bool:
    """Ingest's own rule: a job is complete when it failed, or when 'ingest metadata' reached 100%."""
    if state.get('complete') is True or state.get('state') == 'FAILED':
        return True
    try:
        return state.get('task') == 'ingest metadata' and float(state.get('task_percent', 0)) >= 100
    except (TypeError, ValueError):
        return False


def _why(answer: requests.Response) -> str:
    """The message of a Pacifica service's JSON error page, or the start of whatever it sent."""
    try:
        return str(answer.json().get('message'))
    except (ValueError, AttributeError):
        return answer.text[:300]
