"""``start-pacifica-notifications-consumer``: turn a consumer.zip into a running subscriber.

On start, in order, each step saying what it does and failing with one line:
extract the zip, make its virtual environment, install what it needs, open
the job queue, start the endpoint, subscribe at the producer.  Then jobs run,
``--workers`` at a time, until SIGINT or SIGTERM: the endpoint stops taking
events, running jobs get ``--grace`` seconds to finish (the others stay
queued for the next start), the subscription is deleted, and the
environment and the extracted folder are removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__, environment, jobenv, jobs, package, running
from .endpoint import Endpoint
from .package import ConsumerError
from .producer import Producer

PROG = 'start-pacifica-notifications-consumer'
LOG = logging.getLogger(PROG)

#: Seconds a worker waits for a job before it looks whether it should stop.
POLL = 0.5


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n', 1)[0])
    parse.add_argument('consumer_zip', type=Path, help='the consumer.zip to run')
    parse.add_argument('--producer-url', required=True, help='pacifica-notifications, e.g. http://notifications:8070')
    parse.add_argument('--user', required=True, help='the user the subscription belongs to (Http-Remote-User)')
    parse.add_argument('--producer-auth', help='an Authorization header value for the producer (e.g. "Bearer ...")')
    parse.add_argument('--listen', default='127.0.0.1:8090', help='host:port the endpoint listens on')
    parse.add_argument('--public-url', help='the URL the producer delivers to (default: http://LISTEN/receive)')
    parse.add_argument('--cart-url', default='', help="Pacifica's cart service, for download()")
    parse.add_argument('--ingest-url', default='', help="Pacifica's ingest service, for upload()")
    parse.add_argument(
        '--policy-url', default='', help="Pacifica's policy service, for entry points that ask it (upload() does not)"
    )
    parse.add_argument('--workers', type=int, default=1, help='jobs run at once (default 1)')
    parse.add_argument('--work-dir', type=Path, help='where jobs and their files are kept (default: ./<zip name>.work)')
    parse.add_argument('--time-limit', type=float, default=3600.0, help='seconds one job may run (default 3600)')
    parse.add_argument('--grace', type=float, default=30.0, help='seconds running jobs get to finish at stop')
    parse.add_argument('--keep', action='store_true', help='keep the environment and the extracted folder at stop')
    parse.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    return parse


def own_distribution(into: Path) -> Path:
    """A source tree of this very distribution, as installed, for pip to install into a consumer's environment."""
    here = Path(__file__).resolve().parent
    tree = into / 'pacifica-notifications-consumer'
    shutil.copytree(here, tree / here.name, ignore=shutil.ignore_patterns('__pycache__'))
    requires = [req for req in metadata.requires('pacifica-notifications-consumer') or [] if 'extra ==' not in req]
    (tree / 'pyproject.toml').write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "pacifica-notifications-consumer"\nversion = "{__version__}"\n'
        f'dependencies = {requires!r}\n'.replace("'", '"')
        + f'[tool.setuptools]\npackages = ["{here.name}"]\n'
    )
    return tree


def consumer_id(zip_path: Path) -> str:
    """A name for this consumer that outlives restarts: a digest of its zip."""
    return 'consumer-' + hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]


class Runner:
    """One consumer.zip, from start to stop."""

    def __init__(self, args: argparse.Namespace, say: Callable[[str], None]):
        self.args, self.say = args, say
        self.stopping = threading.Event()
        self.scratch: Path | None = None
        self.queue: jobs.JobQueue | None = None
        self.endpoint: Endpoint | None = None
        self.producer = Producer(args.producer_url, args.user, args.producer_auth)
        self.sub: dict[str, Any] | None = None
        self.work = (args.work_dir or Path.cwd() / f'{args.consumer_zip.stem}.work').resolve()
        self.state_file = self.work / 'subscription.json'

    def start(self) -> None:
        """Every step of the start, in order; raises :class:`ConsumerError` naming what failed."""
        args = self.args
        if not args.consumer_zip.is_file():
            raise ConsumerError(f'{args.consumer_zip}: no such file')
        self.ident = consumer_id(args.consumer_zip)
        self.scratch = Path(tempfile.mkdtemp(prefix='pacifica-consumer-'))
        self.say(f'[1/6] extracting {args.consumer_zip} into {self.scratch / "consumer"}')
        self.package = package.extract(args.consumer_zip, self.scratch / 'consumer')
        self.say(f'[2/6] creating a virtual environment in {self.scratch / "venv"}')
        own = own_distribution(self.scratch / 'dist')
        self.say('[3/6] running init.sh and installing requirements.txt')
        self.python = environment.create(self.package, self.scratch / 'venv', str(own), self.say)
        self.say(f'[4/6] opening the job queue in {self.work}')
        self.work.mkdir(parents=True, exist_ok=True)
        self.queue = jobs.JobQueue(self.work / 'jobs.sqlite3')
        again = self.queue.recover()
        counts = self.queue.counts()
        self.say(f'      {counts["queued"]} job(s) queued ({again} taken up again), {counts["done"]} done')
        host, _, port = args.listen.rpartition(':')
        self.say(f'[5/6] starting the endpoint on {args.listen}')
        from .transfer import carries_mark

        self.endpoint = Endpoint(
            host or '127.0.0.1', int(port), self.queue, lambda event: carries_mark(event, self.ident)
        )
        self.endpoint.start()
        public = args.public_url or f'http://{host or "127.0.0.1"}:{self.endpoint.port}/receive'
        self.say(f'[6/6] subscribing at {args.producer_url} as {args.user}, delivering to {public}')
        self.sub, missed_since = self.producer.subscribe(self.state_file, self.ident, self.package.jsonpath, public)
        self.endpoint.secret = self.producer.secret(self.sub['uuid'])
        self.endpoint.accepting.set()
        if missed_since:
            self.say(f'      the last run did not stop; {self.producer.replay(self.sub["uuid"], missed_since)}')
        self.say(f'running: subscription {self.sub["uuid"]}, {args.workers} worker(s); Ctrl-C stops')

    def job_env(self) -> dict[str, str]:
        return {
            **os.environ,
            jobenv.CART_URL: self.args.cart_url,
            jobenv.INGEST_URL: self.args.ingest_url,
            jobenv.POLICY_URL: self.args.policy_url,
            jobenv.CONSUMER_ID: self.ident,
        }

    def work_loop(self, halt: threading.Event) -> None:
        """Run jobs until asked to stop; a job still running at the end of the grace period is queued again."""
        assert self.queue is not None
        while not self.stopping.is_set():
            job = self.queue.take(POLL)
            if job is None:
                continue
            self.say(f'job {job.id}: started')
            result = running.run_job(
                self.work / 'jobs' / str(job.id),
                job.event,
                self.package.folder,
                self.python,
                self.args.time_limit,
                self.job_env(),
                stop=halt,
            )
            if result.stopped:
                self.queue.put_back(job.id)
                self.say(f'job {job.id}: stopped at shutdown; queued for the next start')
                continue
            self.queue.finish(job.id, result.ok, result.exit_status, result.stdout, result.stderr)
            if result.ok:
                self.say(f'job {job.id}: done')
            else:
                why = 'timed out' if result.timed_out else f'exit {result.exit_status}'
                tail = (result.stderr.strip().splitlines() or [''])[-1]
                failures = f'; {len(result.failures)} rejection(s) reported' if result.failures else ''
                self.say(f'job {job.id}: failed ({why}{failures}) {tail}'.rstrip())

    def serve(self) -> None:
        """Run the workers until SIGINT or SIGTERM, then stop in order."""
        halt = threading.Event()
        workers = [
            threading.Thread(target=self.work_loop, args=(halt,), name=f'job-{n}', daemon=True)
            for n in range(self.args.workers)
        ]
        for worker in workers:
            worker.start()
        while not self.stopping.wait(0.2):
            pass
        self.say(f'stopping: no more events; running jobs have {self.args.grace:g} s to finish')
        if self.endpoint is not None:
            self.endpoint.stop()
        assert self.queue is not None
        self.queue.wake_all()
        deadline = time.monotonic() + self.args.grace
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        halt.set()
        for worker in workers:
            worker.join(10)

    def stop(self) -> None:
        """Undo the start: unsubscribe, close the queue, remove the scratch folder unless ``--keep``."""
        if self.endpoint is not None and self.endpoint.accepting.is_set():
            self.endpoint.stop()
        if self.sub is not None:
            try:
                self.producer.unsubscribe(self.state_file, self.sub['uuid'])
                self.say(f'deleted subscription {self.sub["uuid"]}')
            except ConsumerError as exc:
                self.say(f'could not delete subscription {self.sub["uuid"]}: {exc}')
        if self.queue is not None:
            self.queue.close()
        if self.scratch is not None:
            if self.args.keep:
                self.say(f'kept {self.scratch}')
            else:
                shutil.rmtree(self.scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """The console script: start, serve until a signal, stop; one line and status 1 for what cannot start."""
    args = parser().parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    runner = Runner(args, say)
    signal.signal(signal.SIGTERM, lambda *_: runner.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: runner.stopping.set())
    try:
        runner.start()
    except (ConsumerError, OSError, ValueError) as exc:
        runner.stop()
        print(f'{PROG}: error: {exc}', file=sys.stderr, flush=True)
        return 1
    try:
        runner.serve()
    finally:
        runner.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
