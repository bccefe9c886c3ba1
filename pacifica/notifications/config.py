"""Configuration reading and validation module.

Configuration is read here and nowhere else.  Each key has a built-in default
(:data:`SETTINGS`); the INI file named by ``NOTIFICATIONS_CONFIG`` (or ``-c``
on the command line) overrides the defaults, and an environment variable
overrides both, so a deployment can keep one file and still change a single
value per process.

Every key has a type and, where one makes sense, a range.  The server, each
worker and each command validate the whole configuration once, at start
(:func:`settings`), and refuse with one line naming the key, the value and
what is expected; code then reads typed values from :class:`Settings`.
"""

from __future__ import annotations

import base64
import importlib.util
import os
from configparser import ConfigParser
from configparser import Error as ParserError
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from platformdirs import user_data_dir

from .globals import APP_NAME, CONFIG_ENV, DATA_DIR_ENV


class ConfigError(Exception):
    """The configuration cannot be used as given."""


# -- value types: each parses the text of a setting or raises ValueError saying what is expected --


def text(value: str) -> str:
    """Any text."""
    return value


def name(value: str) -> str:
    """Non-empty text without spaces."""
    if not value or any(char.isspace() for char in value):
        raise ValueError('a name without spaces')
    return value


def _plain(value: float) -> str:
    """A bound as people write it: 1073741824, 0.001, 3600."""
    return str(int(value)) if float(value).is_integer() else f'{value:g}'


def number(minimum: float, maximum: float | None = None, integer: bool = False) -> Callable[[str], Any]:
    """A number in ``[minimum, maximum]`` (an integer if ``integer``)."""
    what = (
        ('a whole number' if integer else 'a number')
        + f' of at least {_plain(minimum)}'
        + (f' and at most {_plain(maximum)}' if maximum is not None else '')
    )

    def parse(value: str) -> float | int:
        try:
            parsed = int(value) if integer else float(value)
        except ValueError:
            raise ValueError(what) from None
        if not parsed >= minimum or (maximum is not None and parsed > maximum):
            raise ValueError(what)
        return parsed

    parse.__doc__ = what
    return parse


#: Longest wait a retry schedule may ask for (a week).
MAX_DELAY = 7 * 86400.0


def seconds_list(value: str) -> tuple[float, ...]:
    """Seconds (at least 0) separated by commas; empty for none."""
    try:
        delays = tuple(float(part) for part in value.replace(' ', '').split(',') if part)
    except ValueError:
        raise ValueError('seconds separated by commas') from None
    if any(not 0 <= delay <= MAX_DELAY for delay in delays):
        raise ValueError(f'seconds separated by commas, each from 0 to {MAX_DELAY:g}')
    return delays


def url(*schemes: str, optional: bool = True) -> Callable[[str], str]:
    """A URL with one of ``schemes`` (any scheme if none is named); empty if ``optional``."""
    what = 'a URL' + (f' starting {" or ".join(f"{scheme}://" for scheme in schemes)}' if schemes else '')

    def parse(value: str) -> str:
        if not value and optional:
            return ''
        try:
            parsed = urlparse(value)
        except ValueError:
            raise ValueError(what) from None
        if not parsed.scheme or (schemes and parsed.scheme not in schemes):
            raise ValueError(what)
        return value

    parse.__doc__ = what + (' (or empty)' if optional else '')
    return parse


def choice(*choices: str) -> Callable[[str], str]:
    """One of ``choices``."""
    what = 'one of ' + ', '.join(choices)

    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(what)
        return value

    parse.__doc__ = what
    return parse


def route(value: str) -> str:
    """A path starting with / (no spaces); empty turns the route off."""
    if value and (not value.startswith('/') or any(char.isspace() for char in value) or value == '/'):
        raise ValueError('a path starting with / (or empty, to turn the route off)')
    return value.rstrip('/')


def encryption_keys(value: str) -> tuple[str, ...]:
    """Fernet keys (the URL-safe base64 of 32 bytes) separated by commas, the first one in use; empty for none."""
    keys = tuple(part.strip() for part in value.split(',') if part.strip())
    what = 'Fernet keys separated by commas (each the URL-safe base64 of 32 bytes)'
    for key in keys:
        try:
            size = len(base64.urlsafe_b64decode(key.encode('ascii')))
        except (ValueError, UnicodeEncodeError):
            raise ValueError(what) from None
        if size != 32 or len(key) != 44:
            raise ValueError(what)
    if keys and importlib.util.find_spec('cryptography') is None:
        raise ValueError(f'{what}, and the cryptography package: pip install "pacifica-notifications[encryption]"')
    return keys


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives, its environment variable, default, type and meaning."""

    section: str
    key: str
    env: str
    default: str
    parse: Callable[[str], Any]
    help: str


#: Every configuration key.  A default of '' means "not set": the help says what that implies.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        'DEFAULT',
        'default_user',
        'DEFAULT_USER',
        'anonymous',
        name,
        'The user assumed when a request carries no user header.',
    ),
    Setting(
        'notifications',
        'policy_url',
        'POLICY_URL',
        '',
        url('http', 'https'),
        'The policy server endpoint to query. Unset, the policy step is skipped: set it in production.',
    ),
    Setting(
        'notifications',
        'user_header',
        'USER_HEADER',
        'Http-Remote-User',
        name,
        'The request header naming the remote user.',
    ),
    Setting(
        'notifications',
        'max_request_bytes',
        'MAX_REQUEST_BYTES',
        str(1024 * 1024),
        number(1024, 2**30, integer=True),
        'Largest request body accepted; larger bodies get 413.',
    ),
    Setting(
        'notifications',
        'retry_schedule',
        'RETRY_SCHEDULE',
        '5,30,120,600,1800,3600',
        seconds_list,
        'Seconds to wait after each failed attempt; empty: the first failure disables.',
    ),
    Setting(
        'notifications',
        'connect_timeout',
        'CONNECT_TIMEOUT',
        '5',
        number(0.001, 3600),
        'Seconds to wait for a connection to the policy server or a target.',
    ),
    Setting(
        'notifications',
        'read_timeout',
        'READ_TIMEOUT',
        '30',
        number(0.001, 3600),
        'Seconds to wait for an answer from the policy server or a target.',
    ),
    Setting(
        'notifications',
        'max_logged_body',
        'MAX_LOGGED_BODY',
        '4096',
        number(0, 2**24, integer=True),
        'Bytes of a reply kept in the log.',
    ),
    Setting(
        'notifications',
        'delivery_threads',
        'DELIVERY_THREADS',
        '32',
        number(1, 1024, integer=True),
        'HTTP calls (policy questions and deliveries) one worker process makes at once.',
    ),
    Setting(
        'notifications',
        'target_concurrency',
        'TARGET_CONCURRENCY',
        '8',
        number(1, 1024, integer=True),
        'HTTP calls one worker process makes at once to one target URL; more wait their turn.',
    ),
    Setting(
        'notifications',
        'recover_after',
        'RECOVER_AFTER',
        '300',
        number(1, 7 * 86400),
        'Seconds queued work may wait before the recovery sweep presumes it lost and queues it again.',
    ),
    Setting(
        'notifications',
        'sweep_interval',
        'SWEEP_INTERVAL',
        '30',
        number(0, 86400),
        'Seconds between two recovery sweeps of one worker; 0 turns them off.',
    ),
    Setting(
        'notifications',
        'secret_rotation_grace',
        'SECRET_ROTATION_GRACE',
        '86400',
        number(0, 30 * 86400),
        'Seconds a rotated signing secret still signs deliveries, beside the new one.',
    ),
    Setting(
        'notifications',
        'secret_key',
        'SECRET_KEY',
        '',
        encryption_keys,
        'Keys that encrypt signing secrets at rest; the first seals, all open. Unset: stored unencrypted.',
    ),
    Setting(
        'notifications',
        'replay_window',
        'REPLAY_WINDOW',
        str(7 * 86400),
        number(1, 366 * 86400),
        'Longest span of time, in seconds, that one replay may ask for.',
    ),
    Setting(
        'notifications',
        'status_path',
        'STATUS_PATH',
        '/status',
        route,
        'Where the health check is served (no user header needed). Empty: not served.',
    ),
    Setting(
        'notifications',
        'metrics_path',
        'METRICS_PATH',
        '/metrics',
        route,
        'Where Prometheus metrics are served (no user header needed). Empty: not served.',
    ),
    Setting(
        'notifications',
        'metrics_dir',
        'METRICS_DIR',
        '',
        text,
        "Folder where every process of this host keeps its metrics, for /metrics to add up. Unset: 'metrics' "
        'in the data folder.',
    ),
    Setting(
        'celery',
        'broker_url',
        'BROKER_URL',
        '',
        url(),
        'The broker: pyamqp://, redis://... Unset: the embedded broker in the data folder.',
    ),
    Setting(
        'celery',
        'backend_url',
        'BACKEND_URL',
        '',
        url(),
        'Where task results are kept. Unset: they are not kept (nothing reads them).',
    ),
    Setting('celery', 'queue', 'CELERY_QUEUE', 'pacifica-notifications', name, 'The queue the tasks go through.'),
    Setting(
        'celery',
        'worker_pool',
        'WORKER_POOL',
        'threads',
        choice('threads', 'prefork', 'solo'),
        "A worker's pool: threads suit work that waits on the network (Celery's --pool wins, but prefork).",
    ),
    Setting(
        'celery',
        'worker_concurrency',
        'WORKER_CONCURRENCY',
        '8',
        number(1, 1000, integer=True),
        "Tasks a worker runs at once (Celery's --concurrency wins).",
    ),
    Setting(
        'database',
        'peewee_url',
        'PEEWEE_URL',
        '',
        url(),
        'The database, as a peewee URL. Unset: a SQLite file in the data folder.',
    ),
    Setting(
        'database',
        'connect_attempts',
        'DATABASE_CONNECT_ATTEMPTS',
        '10',
        number(1, 10000, integer=True),
        'Attempts to connect to the database at start before giving up.',
    ),
    Setting(
        'database',
        'connect_wait',
        'DATABASE_CONNECT_WAIT',
        '20',
        number(0, 3600),
        'Seconds between two attempts to connect to the database at start.',
    ),
)


@dataclass(frozen=True)
class Settings:
    """The configuration as typed values, validated (see :data:`SETTINGS` for each one's meaning)."""

    default_user: str
    policy_url: str
    user_header: str
    max_request_bytes: int
    retry_schedule: tuple[float, ...]
    connect_timeout: float
    read_timeout: float
    max_logged_body: int
    delivery_threads: int
    target_concurrency: int
    recover_after: float
    sweep_interval: float
    secret_rotation_grace: float
    secret_key: tuple[str, ...]
    replay_window: float
    status_path: str
    metrics_path: str
    metrics_dir: str
    broker_url: str
    backend_url: str
    queue: str
    worker_pool: str
    worker_concurrency: int
    peewee_url: str
    connect_attempts: int
    connect_wait: float

    @property
    def in_flight(self) -> float:
        """Longest a single HTTP call may take: connecting, then waiting for the answer."""
        return self.connect_timeout + self.read_timeout


def set_config_file(path: str) -> None:
    """Use ``path`` as the service INI file for this process and its children."""
    os.environ[CONFIG_ENV] = path
    reset()


def config_file() -> str:
    """Return the service INI file in use ('' when there is none)."""
    return os.environ.get(CONFIG_ENV, '')


def reset() -> None:
    """Forget the configuration read so far: the next use reads it again."""
    get_config.cache_clear()
    settings.cache_clear()


@cache
def get_config() -> ConfigParser:
    """Return the ConfigParser object with defaults set.

    Unset keys hold the empty string.  Raises :class:`ConfigError` when the
    named file is missing or is not valid INI.  Values are text, unchecked:
    read :func:`settings` for checked, typed values.
    """
    parser = ConfigParser(interpolation=None)
    for setting in SETTINGS:
        if setting.section != 'DEFAULT' and not parser.has_section(setting.section):
            parser.add_section(setting.section)
        parser.set(setting.section, setting.key, setting.default)
    path = config_file()
    if path:
        try:
            with open(path, encoding='utf-8') as handle:
                parser.read_file(handle)
        except OSError as exc:
            raise ConfigError(f'cannot read config file {path}: {exc.strerror}') from exc
        except ParserError as exc:
            raise ConfigError(f'config file {path} is not valid INI: {exc}') from exc
    for setting in SETTINGS:
        if setting.env in os.environ:
            parser.set(setting.section, setting.key, os.environ[setting.env])
    return parser


@cache
def settings() -> Settings:
    """The whole configuration, checked and typed; raises :class:`ConfigError` naming the first bad key."""
    parser = get_config()
    values = {}
    for setting in SETTINGS:
        raw = parser.get(setting.section, setting.key).strip()
        try:
            values[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f'[{setting.section}] {setting.key} ({setting.env}) = {raw!r}: expected {exc}') from None
    return Settings(**{field.name: values[field.name] for field in fields(Settings)})


def data_dir() -> Path:
    """Return the folder for the embedded default's files, creating it on first use."""
    path = Path(os.environ.get(DATA_DIR_ENV) or user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
