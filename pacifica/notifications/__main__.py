"""Command line entry points: ``pacifica-notifications`` (the server) and
``pacifica-notifications-cmd`` (administration)."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Callable

from kombu.exceptions import OperationalError as BrokerError
from peewee import DatabaseError

from . import eventlog, pipeline, sealing, subscriptions, tasks
from .config import ConfigError, set_config_file
from .globals import CHERRYPY_CONFIG
from .models import SCHEMA_MAJOR, SCHEMA_MINOR, NotificationSystem, utcnow
from .schema import DatabaseUnavailable, OrmSync, SchemaError
from .server import check_database, check_settings, serve

CMD = 'pacifica-notifications-cmd'
SERVER = 'pacifica-notifications'

#: What a bare ``eventpurge`` (no UUID, no date) purges: events older than a day, as 0.5.2 did.
BARE_PURGE_AGE = timedelta(days=1)

#: Seconds the server runs with the (test-only) ``--stop-after-a-moment``.
STOP_AFTER_A_MOMENT = 5.0


def _dbchk(args: argparse.Namespace) -> int:
    version = NotificationSystem.get_version()
    good = NotificationSystem.is_equal() if args.equal else NotificationSystem.is_safe()
    if good:
        return 0
    print(
        f'{CMD}: schema is {version[0]}.{version[1]}, code needs {SCHEMA_MAJOR}.{SCHEMA_MINOR}; run {CMD} dbsync',
        file=sys.stderr,
    )
    return -1


def _dbsync(_args: argparse.Namespace) -> int:
    OrmSync.update_tables()
    try:
        sealed = subscriptions.reseal_all()
    except sealing.SealError as exc:
        raise ConfigError(f'[notifications] secret_key (SECRET_KEY): {exc}') from None
    if sealed:
        print(f'{CMD}: sealed {sealed} subscription(s) signing secrets with the first key of secret_key')
    return 0


def _require_schema() -> None:
    if not NotificationSystem.is_safe():
        raise SchemaError(f'the database schema is not current; run {CMD} dbsync')


def _eventget(args: argparse.Namespace) -> int:
    _require_schema()
    events = eventlog.select_events(
        eventlog.parse_uuids(args.events),
        args.limit,
        eventlog.parse_date(args.start_date, args.date_format),
        eventlog.parse_date(args.end_date, args.date_format),
    )
    for event in events:
        print(eventlog.format_event(event))
    return 0


def _eventpurge(args: argparse.Namespace) -> int:
    _require_schema()
    uuids = eventlog.parse_uuids(args.events)
    older_than = eventlog.parse_date(args.older_than_date, args.date_format)
    if older_than is None and not uuids:
        older_than = utcnow() - BARE_PURGE_AGE
    deleted = eventlog.purge_events(uuids, older_than, args.limit)
    print(f'purged {deleted} event(s)')
    kept = eventlog.count_unfinished(uuids, older_than)
    if kept:
        print(f'kept {kept} event(s) whose deliveries are still pending')
    return 0


def _eventretry(args: argparse.Namespace) -> int:
    """Dispatch the named events again (``args.events``); the seed's module API calls it directly."""
    _require_schema()
    pending, wait = getattr(args, 'pending', False), getattr(args, 'wait', 0)
    uuids = eventlog.parse_uuids(str(value) for value in args.events)
    if not uuids and not pending:
        raise eventlog.EventLogError('name the events to retry (UUIDs), or use --pending')
    eventlog.require_known(uuids)
    if pending:
        found = tasks.recover_all(keep_schedule=False)
        print(f'requeued {found.describe()}')
    for event_uuid in uuids:
        pipeline.redispatch(str(event_uuid))
        tasks.dispatch_event.delay(str(event_uuid))
        print(f'Event - {event_uuid} requeued')
    if wait:
        for event in eventlog.wait_finished(uuids, wait):
            print(eventlog.format_event(event))
    return 0


def _add_config(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        '-c', '--config', default=default, metavar='CONFIG', help='service INI file (default: $NOTIFICATIONS_CONFIG)'
    )


def _add_dates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('events', nargs='*', metavar='UUID', help='event UUIDs')
    parser.add_argument('--limit', type=int, default=None, help='at most this many events')
    parser.add_argument(
        '--date-format', default=eventlog.DATE_FORMAT, help='strptime format of the dates (default: %(default)r, UTC)'
    )


def cmd_parser() -> argparse.ArgumentParser:
    """Build the parser for ``pacifica-notifications-cmd``."""
    parser = argparse.ArgumentParser(prog=CMD, description='Manage the notifications database.')
    _add_config(parser, None)
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    def command(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help_text, description=help_text)
        _add_config(child, argparse.SUPPRESS)
        child.set_defaults(func=func)
        return child

    dbchk = command('dbchk', _dbchk, 'exit 0 if the schema suits this code, -1 if not')
    dbchk.add_argument('--equal', action='store_true', help='demand the exact version, minor too')
    command('dbsync', _dbsync, 'create or upgrade the schema; encrypt signing secrets with secret_key')
    get = command('eventget', _eventget, 'print logged events and their matches')
    _add_dates(get)
    get.add_argument('--start-date', help='events received at or after this date')
    get.add_argument('--end-date', help='events received at or before this date')
    purge = command('eventpurge', _eventpurge, 'delete logged events and their matches')
    _add_dates(purge)
    purge.add_argument('--older-than-date', help='events received before this date')
    retry = command('eventretry', _eventretry, 'dispatch logged events again; deliveries already made are not repeated')
    retry.add_argument('events', nargs='*', metavar='UUID', help='event UUIDs')
    retry.add_argument(
        '--pending',
        action='store_true',
        help='first queue again all unfinished work now (what the recovery sweep would queue once it is due)',
    )
    retry.add_argument(
        '--wait',
        type=float,
        default=0,
        metavar='SECONDS',
        help='then wait up to this long for every delivery and print the outcome',
    )
    return parser


#: What a command can fail with, each told in one line rather than a traceback.
CMD_ERRORS = (ConfigError, DatabaseError, SchemaError, eventlog.EventLogError, BrokerError)


def cmd(*argv: str) -> int:
    """Run ``pacifica-notifications-cmd`` with these arguments (default: the command line).

    Returns the exit status; errors raise (see :data:`CMD_ERRORS`), as the
    seed's module API did: :func:`cmd_main` turns them into one line.
    """
    args = cmd_parser().parse_args(argv or sys.argv[1:])
    try:
        if args.config:
            set_config_file(args.config)
        check_settings()
        OrmSync.dbconn_blocking()
        return args.func(args)
    finally:
        NotificationSystem.database_close()


def _describe(exc: Exception) -> str:
    if isinstance(exc, BrokerError):
        return f'broker unavailable (nothing lost: the sweep queues it later): {exc}'
    if isinstance(exc, DatabaseError) and not isinstance(exc, (DatabaseUnavailable, SchemaError)):
        return f'database error: {str(exc).strip()}'
    return f'error: {exc}'


def cmd_main() -> None:
    """Console script for :func:`cmd`: its exit status, or one line and status 1."""
    try:
        status = cmd(*sys.argv[1:])
    except CMD_ERRORS as exc:
        print(f'{CMD}: {_describe(exc)}', file=sys.stderr)
        status = 1
    sys.exit(status)


def server_parser() -> argparse.ArgumentParser:
    """Build the parser for ``pacifica-notifications``."""
    parser = argparse.ArgumentParser(prog=SERVER, description='Run the notifications server.')
    parser.add_argument(
        '-c', '--config', '--cpconfig', dest='config', default=CHERRYPY_CONFIG, help='cherrypy config file'
    )
    parser.add_argument('-p', '--port', type=int, default=None, help='port to listen on')
    parser.add_argument('-a', '--address', default=None, help='address to listen on')
    parser.add_argument(
        '--notifications-config', metavar='FILE', default=None, help='service INI file (default: $NOTIFICATIONS_CONFIG)'
    )
    parser.add_argument(
        '--no-worker',
        dest='worker',
        action='store_false',
        help='on the embedded broker, do not start a worker (run '
        '"celery -A pacifica.notifications.tasks worker" yourself)',
    )
    parser.add_argument('--stop-after-a-moment', dest='stop_later', action='store_true', help=argparse.SUPPRESS)
    return parser


def main(*argv: str) -> int:
    """Run ``pacifica-notifications`` with these arguments (default: the command line).

    Checks the configuration and the schema, then serves until stopped.  A
    reason not to start raises (a schema that is not current raises
    ``peewee.OperationalError``, as the seed's module API did):
    :func:`server_main` turns it into one line.
    """
    args = server_parser().parse_args(argv or sys.argv[1:])
    if args.notifications_config:
        set_config_file(args.notifications_config)
    check_settings()
    check_database()
    serve(
        args.config, args.address, args.port, args.worker, stop_after=STOP_AFTER_A_MOMENT if args.stop_later else None
    )
    return 0


def server_main() -> None:
    """Console script for :func:`main`: serve, or say in one line why not and exit 1."""
    try:
        status = main(*sys.argv[1:])
    except (ConfigError, DatabaseError) as exc:
        print(f'{SERVER}: cannot start: {exc}'.strip(), file=sys.stderr)
        status = 1
    sys.exit(status)


if __name__ == '__main__':
    server_main()
