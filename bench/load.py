"""Load benchmark: post events to a running service and time their deliveries end to end.

By default it starts everything it needs on 127.0.0.1 (the server, workers, a policy server that
allows all, and a catch-all target recording every delivery), creates K subscriptions through the
REST API (a fraction of them match the posted events), lets C clients post unique events to
``/receive`` as fast as they are answered for T seconds, waits up to ``--drain`` seconds for the
deliveries, stops what it started and prints ONE JSON line.  Progress goes to stderr; the logs of
the processes it started stay in a temporary folder whose path it prints (and names in the JSON).

    # embedded default: SQLite + filesystem broker in a temporary folder, the server's own worker
    python bench/load.py --duration 10

    # PostgreSQL + RabbitMQ, the server with --no-worker and two separate Celery workers
    createdb -h 127.0.0.1 -U postgres bench_load
    python bench/load.py --duration 10 --peewee-url postgres://postgres@127.0.0.1:5432/bench_load \\
        --broker-url amqp://guest:guest@127.0.0.1:5672// --workers 2

``--url http://127.0.0.1:8070`` targets a service that is already running (nothing is started;
it must be able to reach this script's target on 127.0.0.1, and its policy server is its own).
Expected deliveries = accepted events x matching subscriptions; ``lost`` are those that did not
arrive within the drain time, ``duplicates`` arrivals whose ``webhook-id`` was already seen.
Rates are per second of wall time: ``accepted_per_s`` over the posting period,
``deliveries_per_s`` from the first post to the last delivery.  Latency is the first arrival of
a delivery at the target minus the client's send time.  Unthrottled clients (the default)
usually post far faster than deliveries can follow, so latency then measures the backlog;
``--rate R`` posts R events/s in all to measure it at a sustainable load.  ``service_cpu_s`` is
the CPU time of each process started (``server+`` is the embedded worker the server starts).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import common
import requests
from common import Catcher, Children, answering, count_log_problems, free_port, log, log_ready, percentiles, redact

common.TAG = 'load'
FIXTURE = common.FIXTURE
BIN = Path(sys.executable).parent
# Settings we decide; an inherited value would silently change what is measured.
OWN_SETTINGS = (
    'NOTIFICATIONS_CONFIG',
    'PEEWEE_URL',
    'BROKER_URL',
    'CELERY_QUEUE',
    'NOTIFICATIONS_DATA_DIR',
    'POLICY_URL',
)


def create_subscriptions(url: str, target: str, args, run: str) -> tuple[dict, list]:
    """K subscriptions over ``--users`` users, the first M matching, each with its own jsonpath
    and target path.  Returns {target path: uuid} of the matching ones and every (user, uuid)."""
    matching = round(args.subscriptions * args.matching_fraction)
    paths: dict[str, str] = {}
    owners: list[tuple[str, str]] = []
    with requests.Session() as http:
        for index in range(args.subscriptions):
            user = f'load-{run}-u{index % args.users}'
            jsonpath = (
                f'$.data[*][?(@.destinationTable = "Files" and @.size < {1000 + index})]'
                if index < matching
                else f'$.data[*][?(@.destinationTable = "Nope{index}")]'
            )
            resp = http.post(
                f'{url}/eventmatch',
                headers={'Http-Remote-User': user},
                timeout=30,
                json={'name': f'load {run} {index}', 'jsonpath': jsonpath, 'target_url': f'{target}/hook/{index}'},
            )
            resp.raise_for_status()
            if index < matching:
                paths[f'/hook/{index}'] = resp.json()['uuid']
            owners.append((user, resp.json()['uuid']))
    return paths, owners


def delete_subscriptions(url: str, owners: list[tuple[str, str]]) -> None:
    """Delete them so that later runs on the same database do not match them any more."""
    deadline = time.monotonic() + 60
    with requests.Session() as http:
        for user, sub in owners:
            if time.monotonic() > deadline:
                log(f'gave up deleting subscriptions; {len(owners)} were created')
                return
            try:
                http.delete(f'{url}/eventmatch/{sub}', headers={'Http-Remote-User': user}, timeout=10)
            except requests.RequestException as exc:
                log(f'could not delete subscription {sub}: {exc}')
                return


def post_events(
    url: str, run: str, client: int, pace: tuple[float, float], stop: threading.Event, results: dict
) -> None:
    """One client: post unique events until stopped, back to back or paced.

    ``pace`` is (first wait, interval) in seconds; the clients' first waits are staggered so that
    a paced load arrives evenly rather than in bursts of one event per client.
    """
    template = json.loads(FIXTURE.read_text(encoding='utf-8'))
    number = 0
    due, interval = time.monotonic() + pace[0], pace[1]
    with requests.Session() as http:
        while not stop.is_set():
            if interval:
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
                due += interval
            number += 1
            marker = f'load-{run}-{client}-{number}'
            event = {**template, 'eventID': marker, 'id': marker, 'source': f'/bench/load/{run}/{client}'}
            sent = time.monotonic()
            try:
                resp = http.post(f'{url}/receive', json=event, timeout=(5, 30))
            except requests.RequestException as exc:
                results['errors'].append(str(exc))
                continue
            results['receive_ms'].append((time.monotonic() - sent) * 1000)
            if resp.status_code != 200:
                results['rejected'].append(resp.status_code)
            elif resp.json().get('duplicate'):
                results['duplicate_answers'].append(marker)
            else:
                results['sent'][marker] = sent


def start_service(children: Children, args) -> str:
    if args.peewee_url:
        log('pacifica-notifications-cmd dbsync')
        with open(children.folder / 'dbsync.log', 'ab') as out:
            subprocess.run(
                [str(BIN / 'pacifica-notifications-cmd'), 'dbsync'],
                env=children.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=True,
            )
    port = free_port()
    extra = [] if args.workers == 0 else ['--no-worker']
    _proc, server_log = children.start('server', [str(BIN / 'pacifica-notifications'), '-p', str(port), *extra])
    url = f'http://127.0.0.1:{port}'
    children.wait_for('the server to answer', lambda: answering(url), 90)
    if args.workers == 0:
        children.wait_for('the embedded worker', lambda: log_ready(server_log), 90)
    for number in range(args.workers):
        _proc, path = children.start(
            f'worker-{number + 1}',
            [
                str(BIN / 'celery'),
                '-A',
                'pacifica.notifications.tasks',
                'worker',
                '--pool',
                'threads',
                '-c',
                '4',
                '--loglevel',
                'INFO',
                '--without-gossip',
                '--without-mingle',
                '--without-heartbeat',
                '-n',
                f'load{number + 1}@%h',
            ],
        )
        children.wait_for(f'worker {number + 1}', lambda path=path: log_ready(path), 90)
    children.expected = Counter(name for name, _cpu, live in children.processes() if live)
    return url


def delete_queue(env: dict) -> None:
    """Remove this run's queue, and the exchange of the same name Celery made, from the broker."""
    import kombu  # the service's own dependency; only needed for a shared broker

    name = env['CELERY_QUEUE']
    with kombu.Connection(env['BROKER_URL'], connect_timeout=5) as conn:
        kombu.Queue(name).bind(conn.default_channel).delete()
        kombu.Exchange(name).bind(conn.default_channel).delete()
    log(f'deleted queue and exchange {name}')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--url', default='', help='an already running service (start nothing)')
    parser.add_argument('--peewee-url', default='', help='database (default: embedded SQLite)')
    parser.add_argument('--broker-url', default='', help='broker (default: embedded filesystem)')
    parser.add_argument(
        '--workers',
        type=int,
        default=None,
        help="separate Celery workers (default: 0 = the server's embedded worker; 2 with --broker-url)",
    )
    parser.add_argument('--subscriptions', type=int, default=100)
    parser.add_argument('--matching-fraction', type=float, default=0.1)
    parser.add_argument('--users', type=int, default=10, help='subscription owners')
    parser.add_argument('--clients', type=int, default=4)
    parser.add_argument('--duration', type=float, default=60, help='seconds of posting')
    parser.add_argument(
        '--rate',
        type=float,
        default=0,
        help='events per second, all clients together (default 0: as fast as they are answered)',
    )
    parser.add_argument(
        '--drain', type=float, default=120, help='at most this long to wait for deliveries after posting'
    )
    parser.add_argument(
        '--policy',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='run a policy server that allows all and set POLICY_URL',
    )
    parser.add_argument(
        '--keep-data', action='store_true', help='keep the embedded database and broker folder (logs are always kept)'
    )
    args = parser.parse_args()
    if args.workers is None:
        args.workers = 2 if args.broker_url else 0
    if args.broker_url and args.workers == 0 and not args.url:
        parser.error('--workers 0 means the embedded worker, which a --broker-url server does not run')
    if not 0 <= args.matching_fraction <= 1 or min(args.subscriptions, args.users, args.clients) < 1:
        parser.error('need 0 <= --matching-fraction <= 1 and at least one subscription, user, client')
    if args.rate < 0 or args.duration <= 0 or args.drain < 0:
        parser.error('--rate, --duration and --drain cannot be negative')
    return args


def main() -> int:
    args = parse_args()
    for number in (signal.SIGINT, signal.SIGTERM):  # both clean up, even if started in background
        signal.signal(number, signal.default_int_handler)
    run = uuid.uuid4().hex[:8]
    folder = Path(tempfile.mkdtemp(prefix=f'bench-load-{run}-'))
    log(f'run {run}; logs in {folder}')
    env = {k: v for k, v in os.environ.items() if k not in OWN_SETTINGS}
    env.update({'NOTIFICATIONS_DATA_DIR': str(folder / 'data'), 'CELERY_QUEUE': f'bench-load-{run}'})
    env.setdefault('DATABASE_CONNECT_ATTEMPTS', '3')
    env.setdefault('DATABASE_CONNECT_WAIT', '2')
    if args.peewee_url:
        env['PEEWEE_URL'] = args.peewee_url
    if args.broker_url:
        env['BROKER_URL'] = args.broker_url
    target, policy = Catcher(record=True), Catcher(record=False)
    if args.policy and not args.url:
        env['POLICY_URL'] = policy.url
    children = Children(folder, env)
    owners: list[tuple[str, str]] = []
    results = {'sent': {}, 'rejected': [], 'errors': [], 'receive_ms': [], 'duplicate_answers': []}
    stop = threading.Event()
    url = args.url.rstrip('/')
    try:
        if not url:
            url = start_service(children, args)
        log(f'service at {url}; creating {args.subscriptions} subscriptions')
        paths, owners = create_subscriptions(url, target.url, args, run)

        log(
            f'posting with {args.clients} clients for {args.duration:g}s at '
            f'{f"{args.rate:g}/s" if args.rate else "full speed"}'
        )
        interval = args.clients / args.rate if args.rate else 0.0
        clients = [
            threading.Thread(
                target=post_events,
                daemon=True,
                args=(url, run, n, (n * interval / args.clients, interval), stop, results),
            )
            for n in range(args.clients)
        ]
        started = time.monotonic()
        for thread in clients:
            thread.start()
        while time.monotonic() - started < args.duration:
            stop.wait(min(5.0, max(0.0, args.duration - (time.monotonic() - started))))
            children.check()
            log(f'  {len(results["sent"])} accepted, {len(target.arrivals)} arrivals')
        stop.set()
        for thread in clients:
            thread.join(timeout=40)
        posting_s = time.monotonic() - started
        accepted = len(results['sent'])
        expected = accepted * len(paths)

        log(f'{accepted} accepted; waiting up to {args.drain:g}s for {expected} deliveries')
        drain_end = time.monotonic() + args.drain
        next_note = time.monotonic() + 5
        while time.monotonic() < drain_end:
            with target.lock:
                seen = {
                    webhook_id
                    for _, path, webhook_id, marker in target.arrivals
                    if path in paths and marker in results['sent']
                }
            if len(seen) >= expected:
                break
            if time.monotonic() > next_note:
                children.check()
                log(f'  {len(seen)}/{expected} delivered')
                next_note += 5
            time.sleep(0.2)
        with target.lock:
            arrivals = list(target.arrivals)
        children.check()
        service_cpu = children.cpu_seconds()
    finally:
        stop.set()
        if owners:
            log('deleting subscriptions')
            delete_subscriptions(url, owners)
        log('stopping')
        children.stop_all()
        if args.broker_url and not args.url:
            try:
                delete_queue(env)
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
                log(f'could not delete queue {env["CELERY_QUEUE"]}: {exc}')
        target.close()
        policy.close()
        if not args.keep_data:
            shutil.rmtree(folder / 'data', ignore_errors=True)

    first_arrival: dict[str, tuple[float, str, str]] = {}
    duplicates = unexpected = 0
    for at, path, webhook_id, marker in arrivals:
        if path not in paths or marker not in results['sent']:
            unexpected += 1  # a non-matching subscription, or an event whose answer was lost
        elif webhook_id in first_arrival:
            duplicates += 1
        else:
            first_arrival[webhook_id] = (at, path, marker)
    delivered = len(first_arrival)
    latencies = [(at - results['sent'][marker]) * 1000 for at, _, marker in first_arrival.values()]
    last = max((at for at, _, _ in first_arrival.values()), default=started)
    pairs = {(path, marker) for _, path, marker in first_arrival.values()}
    cpu_self = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                'accepted_per_s': round(accepted / posting_s, 1),
                'deliveries_per_s': round(delivered / max(1e-3, last - started), 1),
                'latency_ms': percentiles(latencies),
                'receive_ms': percentiles(results['receive_ms']),
                'accepted': accepted,
                'expected_deliveries': expected,
                'delivered': delivered,
                'lost': expected - delivered,
                'duplicates': duplicates,
                'rejected': len(results['rejected']),
                'rejected_statuses': sorted(set(results['rejected'])),
                'receive_errors': len(results['errors']),
                'duplicate_answers': len(results['duplicate_answers']),
                'unexpected': unexpected,
                'distinct_event_subscription_pairs': len(pairs),
                'drain_s': round(max(0.0, last - started - posting_s), 1),
                'policy_calls': policy.count,
                'subscriptions': args.subscriptions,
                'matching': len(paths),
                'users': args.users,
                'clients': args.clients,
                'rate': args.rate,
                'duration': args.duration,
                'workers': args.workers,
                'worker_mode': 'external' if args.url else ('embedded' if args.workers == 0 else 'separate'),
                'policy': None if args.url else args.policy,
                'db': None if args.url else redact(args.peewee_url) or 'embedded-sqlite',
                'broker': None if args.url else redact(args.broker_url) or 'embedded-filesystem',
                'bench_cpu_s': round(cpu_self.ru_utime + cpu_self.ru_stime, 1),
                'service_cpu_s': service_cpu,
                'died': children.died,
                'log_problems': count_log_problems(folder),
                'logs': str(folder),
            }
        )
    )
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log('interrupted; everything started was stopped')
        sys.exit(130)
