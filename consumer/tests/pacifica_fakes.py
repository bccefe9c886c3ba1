"""Stand-ins for Pacifica's cart and ingest services: small real HTTP servers on 127.0.0.1.

They answer the endpoints ``download()`` and ``upload()`` use the way the real services do, as read in
pacifica-cartd 0.7.0 (``pacifica/cartd/rest.py``, ``tasks.py``, ``utils.py``, ``archive_requests.py``) and
pacifica-ingest 0.4.1 (``pacifica/ingest/rest.py``, ``tasks.py``, ``tarutils.py``, ``utils.py``, ``orm.py``):

- :class:`FakeCart`: ``POST /<uid>`` (``{"fileids": [...]}`` checked against cartd's JSON schema: 201, or
  500 with CherryPy's JSON error page), ``HEAD /<uid>`` (``X-Pacifica-Status`` ``staging`` then ``ready``
  with 204, ``error`` with 500 and the reason in ``X-Pacifica-Message``, 404 for an unknown cart),
  ``GET /<uid>?filename=`` (202 "not ready" text while staging *and* after an error, as cartd does; 200 with
  a chunked tar of one top folder named after ``filename`` when ready), ``DELETE /<uid>``.  The files come
  from :attr:`FakeCart.archive` (what the archive interface holds, by file id), and a content whose hash
  differs from the requested ``hashsum`` fails the cart with cartd's own message.
- :class:`FakeIngest`: ``POST /upload`` (the bundle as body; answers the job state at ``UPLOADING``),
  ``GET /get_state?job_id=`` (the state, moving one step per request to ``ingest metadata`` 100 and
  ``complete``, or to ``FAILED`` at the task that failed: ``open tar``, ``load metadata``, ``Policy
  Validation``, ``ingest files``), with ingest's checks: a tar, a ``metadata.txt``, a ``data/<subdir>/<name>``
  member for each Files record, and its content matching the record's hash.  What was ingested is kept
  in :attr:`FakeIngest.transactions` for the tests to inspect.

The real services run in ``test_real_pacifica.py`` (see ``pacifica_real``); these stand-ins stay for
what the real ones cannot be made to do on demand (a cart that stays staging, a failure at each
ingest task, a bundle to inspect) and for speed.  Their answers (headers, status codes, tar layout,
the hash-mismatch message, the 202 after an error) were recorded from pacifica-cartd 0.7.0 with
pacifica-archiveinterface 0.4.2; the ingest checks follow pacifica-ingest 0.4.1's ingest task.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

CHERRYPY_VERSION = '18.10.0'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True
    service: Any = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def body(self) -> bytes:
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            chunks = []
            while size := int(self.rfile.readline().split(b';')[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b''.join(chunks)
        return self.rfile.read(int(self.headers.get('Content-Length') or 0))

    def send(self, code: int, body: bytes = b'', content_type: str = 'application/json', **headers: str) -> None:
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        for name, value in headers.items():
            self.send_header(name.replace('_', '-'), value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def send_json(self, code: int, value: Any, **headers: str) -> None:
        self.send(code, json.dumps(value).encode(), **headers)

    def error_page(self, code: int, message: str, trace: str = '') -> None:
        """CherryPy's error page as both services configure it: JSON with status, message, traceback, version."""
        status = f'{code} {self.responses[code][0]}'
        self.send_json(code, {'status': status, 'message': message, 'traceback': trace, 'version': CHERRYPY_VERSION})

    def send_chunked(self, body: bytes, content_type: str, **headers: str) -> None:
        """A streamed answer, as cartd streams a cart (CherryPy's ``response.stream``)."""
        self.send_response(200)
        self.send_header('Content-Type', content_type)
        for name, value in headers.items():
            self.send_header(name.replace('_', '-'), value)
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        for start in range(0, len(body), 64 * 1024):
            chunk = body[start : start + 64 * 1024]
            self.wfile.write(b'%x\r\n%s\r\n' % (len(chunk), chunk))
        self.wfile.write(b'0\r\n\r\n')


class _Server:
    """A threaded HTTP server on 127.0.0.1 and a free port; a context manager that starts and stops it."""

    handler: type[_Handler] = _Handler

    def __init__(self) -> None:
        handler = type(self.handler.__name__, (self.handler,), {'service': self})
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.httpd.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.httpd.server_port}'
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)

    def __enter__(self) -> _Server:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


# --- cart service ---------------------------------------------------------------------------------

HASH_MISMATCH = 'Failed to pull file(Failed to pull with error: File hash does not match provided hash)'


def _schema_error(data: Any) -> Optional[str]:
    """cartd's ``CartRoot.json_schema``: fileids, each with id (integer or string), path, hashtype, hashsum."""
    if not isinstance(data, dict) or 'fileids' not in data:
        return "'fileids' is a required property"
    if not isinstance(data['fileids'], list):
        return f"{data['fileids']!r} is not of type 'array'"
    for item in data['fileids']:
        if not isinstance(item, dict):
            return f"{item!r} is not of type 'object'"
        for key in ('id', 'path', 'hashtype', 'hashsum'):
            if key not in item:
                return f"'{key}' is a required property"
        if isinstance(item['id'], bool) or not isinstance(item['id'], (int, str)):
            return f"{item['id']!r} is not of type 'integer', 'string'"
        for key in ('path', 'hashtype', 'hashsum'):
            if not isinstance(item[key], str):
                return f"{item[key]!r} is not of type 'string'"
    return None


@dataclass
class Cart:
    files: dict[str, bytes]  # path in the cart -> content
    error: str = ''
    heads: int = 0


class _CartHandler(_Handler):
    service: FakeCart

    def uid(self) -> str:
        return urlsplit(self.path).path.strip('/')

    def do_POST(self) -> None:
        self.service.requests.append(('POST', self.path))
        try:
            data = json.loads(self.body())
        except ValueError:
            return self.error_page(400, 'Invalid JSON document')
        problem = _schema_error(data)
        if problem:
            trace = f'Traceback (most recent call last):\njsonschema.exceptions.ValidationError: {problem}\n'
            return self.error_page(
                500,
                'The server encountered an unexpected condition which prevented it from fulfilling the request.',
                trace,
            )
        self.service.carts[self.uid()] = self.service.stage(data['fileids'])
        self.send_json(201, {'message': 'Cart Processing has begun'})

    def do_HEAD(self) -> None:
        self.service.requests.append(('HEAD', self.path))
        cart = self.service.carts.get(self.uid())
        if cart is None:
            message = f'No cart with uid {self.uid()} found'
            return self.send(404, b'', X_Pacifica_Status='error', X_Pacifica_Message=message)
        cart.heads += 1
        if cart.heads <= self.service.staging_heads:
            return self.send(204, X_Pacifica_Status='staging', X_Pacifica_Message='')
        if cart.error:
            return self.send(500, X_Pacifica_Status='error', X_Pacifica_Message=cart.error)
        self.send(204, X_Pacifica_Status='ready', X_Pacifica_Message='')

    def do_GET(self) -> None:
        self.service.requests.append(('GET', self.path))
        if not self.uid():
            return self.send_json(200, {'message': 'Pacifica Cartd Interface Up and Running'})
        cart = self.service.carts.get(self.uid())
        if cart is None:
            return self.error_page(404, 'The cart does not exist or has already been deleted')
        if cart.error or cart.heads <= self.service.staging_heads:
            return self.send(202, b'The cart is not ready for download.', 'text/html;charset=utf-8')
        query = parse_qs(urlsplit(self.path).query)
        filename = query.get('filename', [datetime.now().strftime('data_%Y_%m_%d_%H_%M_%S.tar')])[0]
        body = self.service.tar(cart, filename.replace('.tar', ''))
        self.send_chunked(body, 'application/octet-stream', Content_Disposition=f'attachment; filename={filename}')

    def do_DELETE(self) -> None:
        self.service.requests.append(('DELETE', self.path))
        if self.service.carts.pop(self.uid(), None) is None:
            return self.error_page(404, 'Not Found')
        self.send_json(200, {'message': 'Cart Deleted Successfully'})


class FakeCart(_Server):
    """pacifica-cartd in front of an archive holding :attr:`archive` (file id as a string -> content)."""

    handler = _CartHandler

    def __init__(self, archive: Optional[dict[str, bytes]] = None, staging_heads: int = 1):
        super().__init__()
        self.archive = dict(archive or {})
        #: HEADs answered ``staging`` before a cart is ``ready`` (or ``error``).
        self.staging_heads = staging_heads
        self.carts: dict[str, Cart] = {}
        #: Raw members added to every cart's tar: what a broken or hostile cart service could send.
        self.extra_members: list[tuple[tarfile.TarInfo, bytes]] = []
        #: Every fileids list posted, in order.
        self.posted: list[list[dict[str, Any]]] = []

    def stage(self, fileids: list[dict[str, Any]]) -> Cart:
        """What cartd's tasks do: stage and pull each file, checking its hash; the first failure fails the cart."""
        self.posted.append(fileids)
        cart = Cart(files={})
        for item in fileids:
            content = self.archive.get(str(item['id']))
            if content is None:
                cart.error = (
                    f'Failed to pull file(Failed to stage with error: "... Can\'t open posix file with error: '
                    f"[Errno 2] No such file or directory: '{item['id']}' ...\")"
                )
                break
            try:
                digest = hashlib.new(item['hashtype'], content).hexdigest()
            except ValueError as exc:
                cart.error = f'Failed to pull file(Failed to pull with error: {exc})'
                break
            if digest != item['hashsum']:
                cart.error = HASH_MISMATCH
                break
            path = posixpath.normpath(item['path'].lstrip('/'))  # cartd's fix_absolute_path; the OS cleans '//'
            if not path.startswith('..'):  # cartd would write it outside the cart folder: not in the tar
                cart.files[path] = content
        return cart

    def tar(self, cart: Cart, top: str) -> bytes:
        """``tar.add(cart_folder, arcname=top)``: the top folder, each sub-folder, each file; then any extras."""
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode='w|') as tar:
            folders = {top}
            tar.addfile(_folder(top))
            for path in sorted(cart.files):
                parts = path.split('/')
                for depth in range(1, len(parts)):
                    folder = '/'.join([top, *parts[:depth]])
                    if folder not in folders:
                        folders.add(folder)
                        tar.addfile(_folder(folder))
                info = tarfile.TarInfo(f'{top}/{path}')
                info.size = len(cart.files[path])
                tar.addfile(info, io.BytesIO(cart.files[path]))
            for info, content in self.extra_members:
                tar.addfile(info, io.BytesIO(content) if info.isfile() else None)
        return out.getvalue()


def _folder(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


# --- ingest service -------------------------------------------------------------------------------


@dataclass
class Transaction:
    """One successful ingest: the metadata sent to the metadata service and the files sent to the archive."""

    job_id: int
    user: str
    metadata: list[dict[str, Any]]
    files: dict[str, bytes] = field(default_factory=dict)  # '<subdir>/<name>' -> content

    def attributes(self) -> dict[str, Any]:
        """The ``Transactions.*`` records, by destination table."""
        return {
            r['destinationTable']: r['value']
            for r in self.metadata
            if r['destinationTable'].startswith('Transactions.')
        }

    def key_values(self) -> dict[str, Any]:
        return {r['key']: r['value'] for r in self.metadata if r['destinationTable'] == 'TransactionKeyValue'}

    def file_records(self) -> list[dict[str, Any]]:
        return [r for r in self.metadata if r['destinationTable'] == 'Files']


class IngestFailed(Exception):
    def __init__(self, task: str, message: str):
        super().__init__(message)
        self.task = task


def _now() -> str:
    return str(datetime.now(timezone.utc).replace(tzinfo=None))


def _clipped(path: str) -> str:
    """pacifica-ingest's ``get_clipped``: drop a leading ``data`` folder and empty parts."""
    parts = path.split('/')
    if parts[0] == 'data':
        del parts[0]
    return '/'.join(part for part in parts if part)


class _IngestHandler(_Handler):
    service: FakeIngest

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip('/') == '':
            return self.send_json(200, {'message': 'Pacifica Ingest Up and Running'})
        if url.path != '/get_state':
            return self.error_page(404, f"The path '{url.path}' was not found.")
        job_ids = parse_qs(url.query).get('job_id')
        if not job_ids:
            return self.error_page(404, 'Missing parameters: job_id')
        try:
            job_id = int(job_ids[0])
        except ValueError:
            return self.error_page(500, 'The server encountered an unexpected condition', traceback.format_exc())
        state = self.service.next_state(job_id)
        if state is None:
            return self.error_page(404, f'job ID {job_id} does not exist.')
        self.send_json(200, state)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != '/upload':
            return self.error_page(404, f"The path '{self.path}' was not found.")
        body = self.body()
        user = self.headers.get('X-Http-Authed-User', 'root')
        self.send_json(200, self.service.receive(body, user))


class FakeIngest(_Server):
    """pacifica-ingest with its metadata, policy and archive services behind it, all agreeing."""

    handler = _IngestHandler

    def __init__(self, policy: Optional[Callable[[list[dict[str, Any]], str], Optional[str]]] = None):
        super().__init__()
        #: Asked like the policy service: the metadata and the user; a message refuses the ingest.
        self.policy = policy or (lambda metadata, user: None)
        self.transactions: list[Transaction] = []
        self.bundles: list[bytes] = []
        self.jobs: dict[int, list[dict[str, Any]]] = {}
        self.next_job, self.next_file = 1000, 5000  # the uniqueid service's upload_job and file ranges

    def receive(self, body: bytes, user: str) -> dict[str, Any]:
        """Take a bundle: answer ``UPLOADING``, then let ``get_state`` walk the job's later states."""
        with self.lock:
            job_id, self.next_job = self.next_job, self.next_job + 1
        self.bundles.append(body)
        created = _now()
        state = self._state(job_id, created, 'OK', 'UPLOADING', 0)
        try:
            transaction = self._ingest(job_id, body, user)
        except IngestFailed as failed:
            final = self._state(job_id, created, 'FAILED', failed.task, 0, str(failed))
        else:
            self.transactions.append(transaction)
            final = self._state(job_id, created, 'OK', 'ingest metadata', 100)
        self.jobs[job_id] = [self._state(job_id, created, 'OK', 'ingest files', 0), final]
        return state

    def next_state(self, job_id: int) -> Optional[dict[str, Any]]:
        states = self.jobs.get(job_id)
        if states is None:
            return None
        return states.pop(0) if len(states) > 1 else states[0]

    @staticmethod
    def _state(job_id: int, created: str, state: str, task: str, percent: int, exception: str = '') -> dict[str, Any]:
        """``create_state_response``: complete once failed or once 'ingest metadata' reached 100."""
        return {
            'job_id': job_id,
            'state': state,
            'task': task,
            'task_percent': f'{percent:.1f}',
            'complete': state == 'FAILED' or (task == 'ingest metadata' and percent == 100),
            'updated': _now(),
            'created': created,
            'exception': exception,
        }

    def _ingest(self, job_id: int, body: bytes, user: str) -> Transaction:
        """pacifica-ingest's ``ingest`` task, in order: open tar, load metadata, policy, files, metadata."""
        try:
            tar = tarfile.open(fileobj=io.BytesIO(body), mode='r:')
        except tarfile.TarError:
            raise IngestFailed('open tar', 'Failed to open tarfile.')
        try:
            metadata = json.loads(tar.extractfile('metadata.txt').read())  # type: ignore[union-attr]
            files = [record for record in metadata if record['destinationTable'] == 'Files']
        except Exception as exc:  # noqa: BLE001 - ingest records whatever went wrong
            raise IngestFailed('load metadata', str(exc))
        with self.lock:
            first, self.next_file = self.next_file, self.next_file + len(files)
        for offset, record in enumerate(files):
            record['_id'] = first + offset
        metadata.append({'destinationTable': 'Transactions._id', 'value': job_id})
        refusal = self.policy(metadata, user)
        if refusal:
            raise IngestFailed('Policy Validation', f'{refusal} (Traceback ...)')
        transaction = Transaction(job_id, user, metadata)
        for record in files:
            path = _clipped(f'{record["subdir"]}/{record["name"]}')
            try:
                content = tar.extractfile(f'data/{path}').read()  # type: ignore[union-attr]
            except KeyError as exc:
                raise IngestFailed('ingest files', f'Traceback ...\n{exc}')
            if hashlib.new(record['hashtype'], content).hexdigest() != record['hashsum'].replace('sha1:', ''):
                raise IngestFailed('ingest files', f'Traceback ...\nFile {record["_id"]} failed to validate.')
            transaction.files[path] = content
        for record in files:
            record['subdir'] = _clipped(record['subdir'])  # MetaParser.clean_metadata
        return transaction
