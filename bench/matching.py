"""Benchmark: match events against 1k, 10k and 100k realistic subscriptions, with plain jsonpath2 beside it.

Usage: python bench/matching.py [--sizes 1000,10000,100000] [--events 300] [--baseline-events N]
           [--changes 5] [--seed 1] [--db-url postgres://postgres@127.0.0.1:5432/bench_matching]
           [--tracemalloc] [--timeout 1800] [--quick]

Prints one JSON line per size, then a summary line: the goals of the matching issue and whether
each was met.  Progress goes to stderr.  Each size runs in a child process of its own, so that
start-up and memory are those of a worker starting cold (no parse cache left by a smaller size,
no freed memory to reuse), on a fresh database: a temporary SQLite file, or the PostgreSQL
database ``--db-url`` names, which must not exist (it is created, and dropped after even if the
child had to be stopped).  The child fills it, then measures, in that same process:

* start-up: a fresh ``Matcher()``'s first ``current()``, and the process's RSS growth over it
  (``--tracemalloc`` also traces a second cold start-up; slow);
* per event: ``match(event, now)`` on ``--events`` generated events: p50/p95/p99/max, and how
  many subscriptions and distinct expressions each event matched;
* the baseline: every distinct live expression parsed once by jsonpath2, then all of them tried
  on each of the first few events.  Its p50 over the matcher's gives the speed-up, and the
  expressions it finds must be exactly those of the subscriptions the matcher returned;
* a change: one subscription created, one's jsonpath updated, one soft-deleted (as
  ``subscriptions.py`` writes them), each followed by the next ``current()``, timed and checked
  (the snapshot must see the change); set against a full reload (a fresh ``Matcher()`` in the
  warm process), which a change that is not a rebuild costs far less than;
* ``Matcher.stats()`` where the matcher has it; ``left_to_jsonpath2`` is its count of expressions
  the fast path hands to jsonpath2 (:data:`FALLBACK_KEYS`).

The goals on p99 and on changes are judged from 10,000 subscriptions up, as the p50 ones: below,
a millisecond's jitter decides them.  Exit status 1 when the matcher and jsonpath2 disagree, a
change is not seen, or a size fails; goals not met are only reported.

The subscriptions.  There is no production data to copy, so the mix follows what the issue and
the fixtures say Pacifica users watch: an ingest event names one project, instrument and
submitter, a few key/value tags and some files, and users mostly follow their own project,
instrument or submitter.  Shares, in per mille: project 340, instrument 190, submitter 150,
tag 80, project and instrument together 70, any of a few projects 40, a project's files 38;
site-wide ones that match many events: mimetype 25, mimetype with a size threshold 15, size
threshold 8, file key/value 8, ``!=`` on the mimetype 3; generic ones: eventType 8, source 7,
the seed's consumer jsonpath 6, bare ``data`` 5; the common mistake ``$.data[?(...)]``, which
matches nothing, 4; recursive descent 3.  Values come from fixed pools (5,000 projects, 400
instruments, 1,200 submitters, 38 mimetypes, 2,000 tags, 30 file keys) with a Zipf-like
popularity (weight 1/rank**0.9, steeper for mimetypes and tag keys), both for what users
subscribe to and for what events hold, so popular values are shared by many subscriptions and
many events.  Each user (about one per six subscriptions, some far busier than others) writes
in a style of their own: dots or brackets, parentheses, operand order, ``data`` without ``$``,
sometimes a trailing ``["value"]``; so one text is often shared by several users, and one intent
has several texts.  Generic and site-wide subscriptions match most events and dominate the
matched counts (``matched_by_shape``).  Events are the fixtures with values drawn from the same
pools, 1 to 25 files each, the instrument and submitter mostly among the project's few (as are
the instruments of combined subscriptions); all seeded by ``--seed``.  2% more rows are
soft-deleted or disabled, which the matcher must leave out.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import itertools
import json
import math
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jsonpath2.path import Path as JsonPath
from peewee import chunked

from pacifica.notifications import jsonpath, orm, subscriptions
from pacifica.notifications.matcher import Matcher

FIXTURES = Path(__file__).resolve().parent.parent / 'tests' / 'fixtures'

#: The seed's consumer jsonpath, as the seed's documentation wrote it.
SEED_CONSUMER = (
    '$[?(@["eventID"] and (@["eventType"] = "org.pacifica.metadata.ingest") and '
    '(@["source"] = "/pacifica/metadata/ingest"))]["data"][*]'
    '[?((@["destinationTable"] = "Files") and (@["mimetype"] = "text/plain"))]["_id"]'
)

MIMETYPES = [
    'text/plain', 'application/octet-stream', 'image/tiff', 'application/x-hdf5', 'text/csv', 'image/png',
    'application/json', 'image/jpeg', 'application/pdf', 'application/x-netcdf', 'application/zip',
    'application/gzip', 'application/x-tar', 'text/xml', 'application/vnd.ms-excel', 'chemical/x-pdb',
    'application/x-thermo-raw', 'application/x-bruker-fid', 'application/x-mzml', 'image/x-raw', 'video/mp4',
    'audio/wav', 'chemical/x-cif', 'application/x-matlab-data', 'text/x-python', 'text/x-log', 'image/bmp',
    'image/gif', 'text/html', 'application/msword', 'application/x-sqlite3', 'application/x-yaml',
    'text/markdown', 'application/fits', 'application/dicom', 'application/xml',
    'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', 'image/svg+xml',
]  # fmt: skip

EVENT_TYPES = [
    'org.pacifica.metadata.ingest',
    'org.pacifica.metadata.update',
    'org.pacifica.metadata.delete',
    'org.pacifica.archive.stage',
]
SOURCES = [
    '/pacifica/metadata/ingest',
    'http://metadata.pacifica.org/transactions',
    '/pacifica/metadata/ingest/replica',
    '/pacifica/uploader',
]
TAG_KEYS = ['Tag', 'Taggy', 'Campaign', 'Sample', 'Run', 'Condition', 'Operator', 'Beamline', 'Grant', 'Taggier']
FILE_KEYS = [
    'Micronic Adjustment', 'Temperature', 'Pressure', 'Exposure', 'Detector', 'Operator', 'Wavelength', 'Voltage',
    'Magnification', 'Beam Current', 'Dwell Time', 'Pixel Size', 'Frame Count', 'Gain', 'Binning', 'Filter',
    'Objective', 'Laser Power', 'Scan Rate', 'Resolution', 'Column', 'Flow Rate', 'Solvent', 'Injection Volume',
    'Ionization', 'Polarity', 'Collision Energy', 'Mass Range', 'Field Strength', 'Pulse Sequence',
]  # fmt: skip
SIZE_THRESHOLDS = [0, 1024, 65536, 1 << 20, 10 << 20, 100 << 20, 1 << 30]

#: The names ``Matcher.stats()`` may give the count of expressions it leaves to jsonpath2, first found wins.
FALLBACK_KEYS = ('left_to_jsonpath2', 'matched_by_jsonpath2')


def log(message: str) -> None:
    print(f'[matching {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


class Pool:
    """Values with Zipf-like popularity: weight 1/rank**s, so a few are common and most are rare."""

    def __init__(self, values: list, s: float = 0.9):
        self.values = values
        self.cum = list(itertools.accumulate(1 / rank**s for rank in range(1, len(values) + 1)))

    def draw(self, rng: random.Random):
        return rng.choices(self.values, cum_weights=self.cum)[0]


class Pools:
    """The values subscriptions and events are drawn from; the same for every size of one seed."""

    def __init__(self, seed: int):
        rng = random.Random(f'pools-{seed}')
        projects = {'1234a': None, '1236é': None}
        while len(projects) < 5000:
            projects[f'{rng.randrange(10000, 99999)}{rng.choice(["", "", "", "a", "b", "c"])}'] = None
        self.projects = Pool(list(projects))
        self.instruments = Pool([54, *rng.sample(range(100, 100000), 399)])
        self.submitters = Pool([10, *rng.sample(range(100, 100000), 1199)])
        self.mimetypes = Pool(MIMETYPES, 1.2)
        self.tag_keys = Pool(TAG_KEYS, 1.5)
        words = ['pstack', 'demo', 'calib', 'blank', 'run', 'batch', 'cohort', 'series', 'pilot', 'scan']
        self.tags = Pool(['pstack-demo', 'Blah', *(f'{rng.choice(words)}-{index}' for index in range(1998))])
        self.file_keys = Pool(FILE_KEYS)
        extensions = ['txt', 'csv', 'h5', 'tif', 'raw', 'json', 'dat', 'nc']
        self.names = Pool(['foo.txt', 'bar.txt', *(f'f{index:04d}.{rng.choice(extensions)}' for index in range(998))])
        self.event_types = Pool(EVENT_TYPES, 3.0)
        self.sources = Pool(SOURCES, 2.0)
        self._teams: dict = {}

    def team(self, project) -> tuple[list, list]:
        """The few instruments and submitters a project uses: events and combined subscriptions keep to them."""
        if project not in self._teams:
            rng = random.Random(f'team-{project}')
            instruments = {self.instruments.draw(rng) for _ in range(rng.randint(1, 3))}
            submitters = {self.submitters.draw(rng) for _ in range(rng.randint(1, 5))}
            self._teams[project] = (sorted(instruments), sorted(submitters))
        return self._teams[project]


def literal(value) -> str:
    return json.dumps(value, ensure_ascii=False)


class Writer:
    """One user's way of writing jsonpath: dots or brackets, parentheses, operand order, ``$`` or not."""

    def __init__(self, rng: random.Random):
        self.bracket = rng.random() < 0.3
        self.paren = rng.random() < 0.2
        self.reverse = rng.random() < 0.05
        self.shuffle = rng.random() < 0.1
        self.relative = rng.random() < 0.05
        self.suffix = rng.random() < 0.2

    def key(self, name: str) -> str:
        return f'["{name}"]' if self.bracket else f'.{name}'

    def cond(self, name: str, op: str, value) -> str:
        left, right = f'@{self.key(name)}', literal(value)
        text = f'{right} {op} {left}' if self.reverse and op == '=' else f'{left} {op} {right}'
        return f'({text})' if self.paren else text

    def all_of(self, rng: random.Random, conds: list) -> str:
        """Conditions joined by ``and``; a string is taken as written (an ``or`` group)."""
        parts = [part if isinstance(part, str) else self.cond(*part) for part in conds]
        if self.shuffle:
            rng.shuffle(parts)
        return ' and '.join(parts)

    def data(self, at: str = '$') -> str:
        return 'data' if at == '$' and self.relative else f'{at}{self.key("data")}'

    def items(self, rng: random.Random, conds: list, *suffixes: str) -> str:
        """An expression on the items of ``data``, optionally picking one of their fields."""
        text = f'{self.data()}[*][?({self.all_of(rng, conds)})]'
        return text + self.key(rng.choice(suffixes)) if suffixes and self.suffix else text

    def has_item(self, rng: random.Random, conds: list) -> str:
        """A filter test on the whole event: some item of ``data`` meets ``conds``."""
        return f'{self.data("@")}[*][?({self.all_of(rng, conds)})]'


def _table(name: str) -> tuple:
    return ('destinationTable', '=', name)


def _threshold(rng: random.Random) -> int:
    if rng.random() < 0.7:
        return rng.choice(SIZE_THRESHOLDS)
    return rng.choice([1, 2, 5]) * 10 ** rng.randrange(2, 10)


def _project(pools: Pools, rng, w: Writer) -> str:
    return w.items(rng, [_table('Transactions.project'), ('value', '=', pools.projects.draw(rng))], 'value')


def _instrument(pools: Pools, rng, w: Writer) -> str:
    return w.items(rng, [_table('Transactions.instrument'), ('value', '=', pools.instruments.draw(rng))], 'value')


def _submitter(pools: Pools, rng, w: Writer) -> str:
    return w.items(rng, [_table('Transactions.submitter'), ('value', '=', pools.submitters.draw(rng))], 'value')


def _tag(pools: Pools, rng, w: Writer) -> str:
    conds = [_table('TransactionKeyValue'), ('key', '=', pools.tag_keys.draw(rng))]
    if rng.random() < 0.85:
        conds.append(('value', '=', pools.tags.draw(rng)))
    return w.items(rng, conds, 'value')


def _project_instrument(pools: Pools, rng, w: Writer) -> str:
    value = pools.projects.draw(rng)
    project = w.has_item(rng, [_table('Transactions.project'), ('value', '=', value)])
    instrument = w.has_item(rng, [_table('Transactions.instrument'), ('value', '=', rng.choice(pools.team(value)[0]))])
    text = f'$[?({project} and {instrument})]'
    if rng.random() < 0.3:
        text += f'{w.key("data")}[*][?({w.cond(*_table("Files"))})]'
    return text


def _mimetype(pools: Pools, rng, w: Writer) -> str:
    return w.items(rng, [_table('Files'), ('mimetype', '=', pools.mimetypes.draw(rng))], '_id', 'name')


def _projects_any(pools: Pools, rng, w: Writer) -> str:
    projects = {pools.projects.draw(rng) for _ in range(rng.randint(2, 4))}
    group = '(' + ' or '.join(w.cond('value', '=', project) for project in sorted(projects)) + ')'
    return w.items(rng, [_table('Transactions.project'), group], 'value')


def _project_files(pools: Pools, rng, w: Writer) -> str:
    project = w.has_item(rng, [_table('Transactions.project'), ('value', '=', pools.projects.draw(rng))])
    files = [_table('Files')]
    if rng.random() < 0.5:
        files.append(('mimetype', '=', pools.mimetypes.draw(rng)))
    text = f'$[?({project})]{w.key("data")}[*][?({w.all_of(rng, files)})]'
    return text + w.key(rng.choice(['_id', 'name'])) if w.suffix else text


def _mimetype_size(pools: Pools, rng, w: Writer) -> str:
    conds = [_table('Files'), ('mimetype', '=', pools.mimetypes.draw(rng)), ('size', '>', _threshold(rng))]
    return w.items(rng, conds, '_id')


def _size(pools: Pools, rng, w: Writer) -> str:
    return w.items(rng, [_table('Files'), ('size', rng.choice(['>', '>', '>=']), _threshold(rng))], 'name')


def _file_kv(pools: Pools, rng, w: Writer) -> str:
    return w.items(rng, [_table('FileKeyValue'), ('key', '=', pools.file_keys.draw(rng))], 'value')


def _not_mimetype(pools: Pools, rng, w: Writer) -> str:
    return w.items(rng, [_table('Files'), ('mimetype', '!=', pools.mimetypes.draw(rng))])


def _event_type(pools: Pools, rng, w: Writer) -> str:
    return f'$[?({w.cond("eventType", "=", pools.event_types.draw(rng))})]'


def _source(pools: Pools, rng, w: Writer) -> str:
    conds = [('source', '=', pools.sources.draw(rng))]
    if rng.random() < 0.3:
        conds.append(('eventType', '=', pools.event_types.draw(rng)))
    return f'$[?({w.all_of(rng, conds)})]'


def _consumer(pools: Pools, rng, w: Writer) -> str:
    if rng.random() < 0.7:
        return SEED_CONSUMER
    return SEED_CONSUMER.replace('"text/plain"', literal(pools.mimetypes.draw(rng)))


def _bare(pools: Pools, rng, w: Writer) -> str:
    return rng.choice(['data', 'data', '$.data', '$["data"]'])


def _mistake(pools: Pools, rng, w: Writer) -> str:
    conds = [_table('Files')] if rng.random() < 0.5 else [('mimetype', '=', pools.mimetypes.draw(rng))]
    return f'{w.data()}[?({w.all_of(rng, conds)})]'


def _recursive(pools: Pools, rng, w: Writer) -> str:
    return rng.choice(
        [
            lambda: '$..mimetype',
            lambda: '$..hashsum',
            lambda: f'$..[?(@.value = {literal(pools.tags.draw(rng))})]',
            lambda: f'$..[?(@.mimetype = {literal(pools.mimetypes.draw(rng))})]',
            lambda: f'$..[?(@.name = {literal(pools.names.draw(rng))})]',
        ]
    )()


#: (per mille, name, writer) for each kind of subscription.
SHAPES = [
    (340, 'project', _project),
    (190, 'instrument', _instrument),
    (150, 'submitter', _submitter),
    (80, 'tag', _tag),
    (70, 'project+instrument', _project_instrument),
    (40, 'projects-any', _projects_any),
    (38, 'project-files', _project_files),
    (25, 'mimetype', _mimetype),
    (15, 'mimetype+size', _mimetype_size),
    (8, 'size', _size),
    (8, 'file-kv', _file_kv),
    (3, 'not-mimetype', _not_mimetype),
    (8, 'eventType', _event_type),
    (7, 'source', _source),
    (6, 'consumer', _consumer),
    (5, 'bare-data', _bare),
    (4, 'mistake', _mistake),
    (3, 'recursive', _recursive),
]


def subscription_rows(pools: Pools, size: int, seed: int) -> tuple[list[dict], dict[str, int]]:
    """``size`` live subscriptions and 2% more soft-deleted or disabled rows, as ``insert_many`` rows."""
    rng = random.Random(f'subscriptions-{seed}-{size}')
    users = Pool([f'user{index:06d}' for index in range(max(20, size // 6))], 0.8)
    writers: dict[str, Writer] = {}
    weights = list(itertools.accumulate(weight for weight, _, _ in SHAPES))
    now, rows, mix = orm.utcnow(), [], dict.fromkeys((name for _, name, _ in SHAPES), 0)
    for index in range(size + size // 50):
        user = users.draw(rng)
        writer = writers.setdefault(user, Writer(random.Random(f'{seed}-{user}')))
        _, shape, write = rng.choices(SHAPES, cum_weights=weights)[0]
        created = now - timedelta(seconds=rng.uniform(3600, 2 * 365 * 86400))
        dead = index >= size
        rows.append(
            {
                'uuid': uuid.UUID(int=rng.getrandbits(128), version=4),
                'name': f'{shape} {index}',
                'jsonpath': write(pools, rng, writer),
                'user': user,
                'target_url': f'http://127.0.0.1:9/{user}',
                'auth': '{}',
                'extensions': '{}',
                'version': 'v0.1',
                'created': created,
                'updated': created + timedelta(seconds=60) if dead else created,
                'deleted': created + timedelta(seconds=60) if dead and index % 4 else None,
                'disabled': created + timedelta(seconds=60) if dead and not index % 4 else None,
            }
        )
        if not dead:
            mix[shape] += 1
    return rows, mix


def _mostly(rng: random.Random, usual: list, pool: Pool):
    return rng.choice(usual) if rng.random() < 0.9 else pool.draw(rng)


def make_events(pools: Pools, rng: random.Random, count: int, project: str | None = None) -> list[dict]:
    """Ingest events shaped like the fixtures, with values from the pools (``project`` forced if given)."""
    names = ('events.json', 'metadata-ingest-event.json')
    templates = [json.loads((FIXTURES / name).read_text(encoding='utf-8')) for name in names]
    file_template = next(item for item in templates[1]['data'] if item['destinationTable'] == 'Files')
    events = []
    for number in range(count):
        event = {key: copy.deepcopy(value) for key, value in templates[number % 2].items() if key != 'data'}
        transaction = rng.randrange(10**6, 10**7)
        value = project or pools.projects.draw(rng)
        instruments, submitters = pools.team(value)
        event.update(
            eventID=f'metadata.ingest.{transaction}',
            eventType=pools.event_types.draw(rng),
            source=pools.sources.draw(rng),
            eventTime=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(1.7e9 + rng.randrange(10**8))),
        )
        data = [
            {'destinationTable': 'Transactions._id', 'value': transaction},
            {'destinationTable': 'Transactions.submitter', 'value': _mostly(rng, submitters, pools.submitters)},
            {'destinationTable': 'Transactions.project', 'value': value},
            {'destinationTable': 'Transactions.instrument', 'value': _mostly(rng, instruments, pools.instruments)},
        ]
        for _ in range(min(5, int(rng.expovariate(0.8)))):
            tag = {'key': pools.tag_keys.draw(rng), 'value': pools.tags.draw(rng)}
            data.append({'destinationTable': 'TransactionKeyValue', **tag})
        mimetype = pools.mimetypes.draw(rng)
        for index in range(1 + min(24, int(rng.expovariate(1 / 3)))):
            file_id = transaction * 100 + index
            data.append(
                {
                    **file_template,
                    '_id': file_id,
                    'name': pools.names.draw(rng),
                    'subdir': f'run{rng.randrange(100)}/',
                    'size': int(10 ** rng.uniform(0, 10)),
                    'mimetype': mimetype if rng.random() < 0.7 else pools.mimetypes.draw(rng),
                    'hashsum': f'{rng.getrandbits(160):040x}',
                }
            )
            if rng.random() < 0.3:
                kv = {'key': pools.file_keys.draw(rng), 'value': f'{rng.uniform(0, 100):.2f}', 'file_id': file_id}
                data.append({'destinationTable': 'FileKeyValue', **kv})
        event['data'] = data
        events.append(event)
    return events


def rss_mb() -> float:
    """This process's resident memory now (``/proc``), else its peak (``getrusage``)."""
    try:
        resident = int(Path('/proc/self/statm').read_text().split()[1])
        return resident * os.sysconf('SC_PAGE_SIZE') / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles, in the unit given, rounded for printing."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {
        'p50': round(rank(50), 3),
        'p95': round(rank(95), 3),
        'p99': round(rank(99), 3),
        'max': round(ordered[-1], 3),
        'mean': round(sum(ordered) / len(ordered), 3),
    }


@contextlib.contextmanager
def scratch_database(url: str | None):
    """A fresh database for one size, removed after even if the child was killed: its URL.

    A temporary SQLite file by default, else the PostgreSQL database ``url`` names, created
    here and refused if it exists (the bench drops only what it made).
    """
    if url is None:
        with tempfile.TemporaryDirectory(prefix='bench-matching-') as folder:
            yield f'sqlite:///{folder}/bench.sqlite3'
        return
    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip('/')
    admin = psycopg2.connect(
        dbname='postgres',
        host=parts.hostname or '127.0.0.1',
        port=parts.port or 5432,
        user=unquote(parts.username or 'postgres'),
        password=unquote(parts.password) if parts.password else None,
        connect_timeout=5,
    )
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            try:
                cur.execute(f'CREATE DATABASE "{name}"')
            except psycopg2.errors.DuplicateDatabase:
                raise SystemExit(
                    f'database {name!r} exists; the bench uses only one it creates: drop it or pick another'
                )
        try:
            yield url
        finally:
            with admin.cursor() as cur:
                # FORCE: sessions a killed child left behind may not have ended yet.
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@contextlib.contextmanager
def bound(url: str):
    """The models bound to ``url`` and connected, every connection closed after."""
    orm.bind_database(url)
    orm.BaseModel.database_connect()
    try:
        yield
    finally:
        orm.BaseModel.database_close()
        close_all = getattr(orm.DB.obj, 'close_all', None)
        if close_all is not None:
            close_all()


def fill(rows: list[dict]) -> None:
    """Insert the rows in multi-row statements, a few thousand rows per transaction."""
    for block in chunked(rows, 10000):
        with orm.BaseModel.atomic():
            for batch in chunked(block, 500):
                orm.EventMatch.insert_many(batch).execute()


def measure(size: int, args: argparse.Namespace) -> dict:
    """Everything for one size, in this process: fill, start-up, events, baseline, changes."""
    pools = Pools(args.seed)
    rows, mix = subscription_rows(pools, size, args.seed)
    events = make_events(pools, random.Random(f'events-{args.seed}-{size}'), args.events)
    probe_rng = random.Random(f'probes-{args.seed}-{size}')
    failures: list[str] = []
    result: dict = {'subscriptions': size}
    kind = urlsplit(args.child_db).scheme
    with bound(args.child_db):
        orm.OrmSync.update_tables()
        started = time.perf_counter()
        fill(rows)
        fill_s = time.perf_counter() - started
        live = orm.EventMatch.live()
        texts = [row.jsonpath for row in orm.EventMatch.select(orm.EventMatch.jsonpath).where(live).distinct()]
        log(f'{size}: {len(rows)} rows ({len(texts)} distinct live expressions) in {fill_s:.1f}s on {kind}')

        # Start-up.  The generated rows stay alive so that the matcher cannot reuse their memory.
        gc.collect()
        before = rss_mb()
        matcher = Matcher()
        started = time.perf_counter()
        matcher.current()
        startup_s = time.perf_counter() - started
        growth = rss_mb() - before
        stats = getattr(matcher, 'stats', None)
        stats_after_startup = stats() if callable(stats) else None
        log(f'{size}: start-up {startup_s:.2f}s, RSS +{growth:.0f} MB')
        del rows

        # Per event, with every subscription eligible.
        gc.collect()
        timings, matched = [], []
        for event in events:
            received = orm.utcnow()
            started = time.perf_counter()
            subs = matcher.match(event, received)
            timings.append((time.perf_counter() - started) * 1000)
            matched.append(subs)
        match_ms = percentiles(timings)
        by_shape = Counter(sub.name.rsplit(' ', 1)[0] for subs in matched for sub in subs)
        log(f'{size}: match p50 {match_ms["p50"]} ms, p99 {match_ms["p99"]} ms over {len(events)} events')
        started = time.perf_counter()
        matcher.current()
        unchanged_ms = (time.perf_counter() - started) * 1000

        # The baseline: every distinct expression, parsed once, tried on each event.
        count = args.baseline_events or (20 if size <= 10000 else 5)
        count = min(count, len(events))
        started = time.perf_counter()
        parsed = [(text, JsonPath.parse_str(jsonpath.normalize(text))) for text in texts]
        parse_s = time.perf_counter() - started
        baseline_ms, disagreements = [], []
        for index, event in enumerate(events[:count]):
            started = time.perf_counter()
            found = {text for text, path in parsed if next(iter(path.match(event)), None) is not None}
            baseline_ms.append((time.perf_counter() - started) * 1000)
            ours = {sub.jsonpath for sub in matched[index]}
            if found != ours:
                disagreements.append(
                    {
                        'event': index,
                        'only_matcher': sorted(ours - found)[:3],
                        'only_jsonpath2': sorted(found - ours)[:3],
                    }
                )
        del parsed
        baseline = percentiles(baseline_ms)
        log(f'{size}: baseline p50 {baseline["p50"]} ms over {count} events (parsing took {parse_s:.1f}s)')

        # Changes to one subscription, each followed by the next current().
        changes: dict[str, list[float]] = {'create': [], 'update': [], 'delete': []}
        targets = iter(probe_rng.sample(matched[0], min(len(matched[0]), 2 * args.changes)))

        def timed_current(what: str):
            started = time.perf_counter()
            snapshot = matcher.current()
            changes[what].append((time.perf_counter() - started) * 1000)
            return snapshot

        def seen(snapshot, sub_uuid, event) -> bool:
            return any(sub.uuid == sub_uuid for sub in snapshot.match(event, orm.utcnow()))

        for number in range(args.changes):
            value = f'bench-probe-{size}-{number}'
            probe = make_events(pools, probe_rng, 1, project=value)[0]
            text = f'$.data[*][?(@.destinationTable = "Transactions.project" and @.value = "{value}")]'
            now = orm.utcnow()
            sub = orm.EventMatch.create(
                name=f'probe {number}',
                jsonpath=text,
                user='bench',
                target_url='http://127.0.0.1:9/',
                created=now,
                updated=now,
            )
            if not seen(timed_current('create'), sub.uuid, probe):
                failures.append(f'a created subscription was not matched ({text})')

            target = next(targets, None)
            if target is None:
                failures.append('too few subscriptions matched the first event to pick ones to change')
                break
            sub = orm.EventMatch.get_by_id(target.uuid)
            sub.jsonpath = text.replace(value, f'{value}-moved')
            sub.updated = orm.utcnow()
            sub.save()
            snapshot = timed_current('update')
            if seen(snapshot, sub.uuid, events[0]):
                failures.append(f'an updated subscription still matched by its old jsonpath ({target.jsonpath})')
            if not seen(snapshot, sub.uuid, make_events(pools, probe_rng, 1, project=f'{value}-moved')[0]):
                failures.append(f'an updated subscription was not matched by its new jsonpath ({sub.jsonpath})')

            target = next(targets, None)
            if target is None:
                failures.append('too few subscriptions matched the first event to pick ones to change')
                break
            subscriptions.delete(orm.EventMatch.get_by_id(target.uuid))
            if seen(timed_current('delete'), target.uuid, events[0]):
                failures.append(f'a deleted subscription was still matched ({target.jsonpath})')
        change_ms = {what: percentiles(values) for what, values in changes.items() if values}
        worst = max((values['p50'] for values in change_ms.values()), default=None)
        log(f'{size}: change p50 ms {json.dumps({what: values["p50"] for what, values in change_ms.items()})}')

        # A full reload by a fresh matcher in this warm process: what a change must cost far less than.
        started = time.perf_counter()
        Matcher().current()
        reload_s = time.perf_counter() - started

        if args.tracemalloc:
            result['tracemalloc_mb'] = traced_startup()
        stats_final = stats() if callable(stats) else None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(
        {
            'db': kind,
            'rows': size + size // 50,
            'distinct_expressions': len(texts),
            'fill_s': round(fill_s, 2),
            'startup_s': round(startup_s, 3),
            'rss_growth_mb': round(growth, 1),
            'rss_growth_bytes_per_subscription': round(growth * 2**20 / size),
            'rss_peak_mb': round(peak, 1),
            'events': len(events),
            'match_ms': match_ms,
            'p99_over_p50': round(match_ms['p99'] / match_ms['p50'], 2) if match_ms['p50'] else None,
            'matched_subscriptions_mean': round(sum(map(len, matched)) / len(matched), 1),
            'matched_expressions_mean': round(
                sum(len({sub.jsonpath for sub in subs}) for subs in matched) / len(matched), 1
            ),
            'matched_by_shape': {shape: round(count / len(matched), 1) for shape, count in by_shape.most_common()},
            'current_unchanged_ms': round(unchanged_ms, 3),
            'change_ms': change_ms,
            'reload_s': round(reload_s, 3),
            'change_p50_over_reload': round(worst / 1000 / reload_s, 6) if worst is not None and reload_s else None,
            'baseline': {
                'events': count,
                'parse_s': round(parse_s, 2),
                'ms': baseline,
                'speedup_p50': round(baseline['p50'] / match_ms['p50'], 1) if match_ms['p50'] else None,
                'agree': not disagreements,
                'disagreements': disagreements[:3],
            },
            'stats': stats_final,
            'stats_after_startup': stats_after_startup,
            'left_to_jsonpath2': next((stats_final[key] for key in FALLBACK_KEYS if key in (stats_final or {})), None),
            'shape_mix': mix,
            'failures': failures,
        }
    )
    return result


def traced_startup() -> dict:
    """Python memory a second start-up allocates, traced (slow; the first was timed untraced), parse caches emptied."""
    for value in list(vars(jsonpath).values()):
        cache_clear = getattr(value, 'cache_clear', None)
        if callable(cache_clear):
            cache_clear()
    gc.collect()
    tracemalloc.start()
    try:
        fresh = Matcher()
        fresh.current()
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {'retained': round(retained / 2**20, 1), 'peak': round(peak / 2**20, 1)}


def goals(results: dict[int, dict], failed: dict[int, str]) -> dict:
    """The issue's goals, each with the figure measured and whether it was met (None: not measured)."""
    checks = []

    def goal(text: str, value, met) -> None:
        checks.append({'goal': text, 'value': value, 'met': met})

    def every(text: str, values: dict, test) -> None:
        goal(text, values, all(value is not None and test(value) for value in values.values()) if values else None)

    for size, limit in ((10000, 5), (100000, 50)):
        run = results.get(size)
        p50 = run and run['match_ms']['p50']
        goal(f'p50 per event at {size:,} <= {limit} ms', p50, None if run is None else p50 <= limit)
    judged = {size: run for size, run in results.items() if size >= 10000}
    every(
        'p99 <= 3 x p50 at 10,000 and up', {size: run['p99_over_p50'] for size, run in judged.items()}, lambda r: r <= 3
    )
    run = results.get(100000)
    goal('start-up at 100,000 <= 10 s', run and run['startup_s'], None if run is None else run['startup_s'] <= 10)
    every(
        'a change costs <= 10% of a full reload at 10,000 and up',
        {size: run['change_p50_over_reload'] for size, run in judged.items()},
        lambda ratio: ratio <= 0.1,
    )
    every('matcher agrees with jsonpath2', {size: run['baseline']['agree'] for size, run in results.items()}, bool)
    every('every change seen by the next current()', {size: not run['failures'] for size, run in results.items()}, bool)
    verdicts = [check['met'] for check in checks]
    return {
        'summary': True,
        'goals': checks,
        'all_met': False if False in verdicts else None if None in verdicts else True,
        'failed_sizes': failed,
        'match_ms_p50': {size: run['match_ms']['p50'] for size, run in results.items()},
        'match_ms_p99': {size: run['match_ms']['p99'] for size, run in results.items()},
        'startup_s': {size: run['startup_s'] for size, run in results.items()},
        'memory_mb': {size: run['rss_growth_mb'] for size, run in results.items()},
        'speedup_p50': {size: run['baseline']['speedup_p50'] for size, run in results.items()},
        'left_to_jsonpath2': {size: run['left_to_jsonpath2'] for size, run in results.items()},
    }


def run_size(size: int, args: argparse.Namespace, passed: list[str]) -> dict | str:
    """One size measured by a child process of its own: its result, or why there is none."""
    with scratch_database(args.db_url) as url:
        command = [sys.executable, __file__, '--child-size', str(size), '--child-db', url, *passed]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            out, _ = child.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return f'stopped after {args.timeout:.0f} s'
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    lines = out.strip().splitlines()
    if child.returncode or not lines:
        return f'the measuring process failed (exit status {child.returncode})'
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', default='1000,10000,100000', help='subscription counts, comma-separated')
    parser.add_argument('--events', type=int, default=300, help='events timed per size')
    parser.add_argument('--baseline-events', type=int, help='events tried by plain jsonpath2 (20; 5 above 10,000)')
    parser.add_argument('--changes', type=int, default=5, help='creates, updates and deletes timed per size')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--db-url', help='a PostgreSQL database to create, use and drop (default: temporary SQLite)')
    parser.add_argument('--tracemalloc', action='store_true', help='also trace the memory of a second start-up')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds allowed per size')
    parser.add_argument('--quick', action='store_true', help='a smoke run: sizes 300,2000, fewer events')
    parser.add_argument('--child-size', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--child-db', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_size:
        print(json.dumps(measure(args.child_size, args), ensure_ascii=False), flush=True)
        return
    if args.db_url:
        parts = urlsplit(args.db_url)
        if parts.scheme not in ('postgres', 'postgresql') or not re.fullmatch(r'[A-Za-z0-9_]+', parts.path.lstrip('/')):
            parser.error(f'--db-url must be postgres://user@host:port/name with a plain name, not {args.db_url!r}')
    if args.quick:
        args.sizes, args.events, args.changes = '300,2000', 60, 2
        args.baseline_events = args.baseline_events or 5
    sizes = [int(size) for size in args.sizes.split(',') if size.strip()]
    passed = ['--events', str(args.events), '--changes', str(args.changes), '--seed', str(args.seed)]
    passed += ['--baseline-events', str(args.baseline_events)] if args.baseline_events else []
    passed += ['--tracemalloc'] if args.tracemalloc else []
    results: dict[int, dict] = {}
    failed: dict[int, str] = {}
    for size in sizes:
        outcome = run_size(size, args, passed)
        if isinstance(outcome, str):
            log(f'{size}: {outcome}')
            failed[size] = outcome
            break
        print(json.dumps(outcome, ensure_ascii=False), flush=True)
        results[size] = outcome
    summary = goals(results, failed)
    print(json.dumps(summary), flush=True)
    wrong = any(run['failures'] or not run['baseline']['agree'] for run in results.values())
    sys.exit(1 if failed or wrong else 0)


if __name__ == '__main__':
    main()
