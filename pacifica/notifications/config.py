"""Configuration reading and validation module.

Configuration is read here and nowhere else.  Each key has a built-in default
(:data:`pacifica.notifications.globals.SETTINGS`); the INI file named by
``NOTIFICATIONS_CONFIG`` (or ``-c`` on the command line) overrides the defaults,
and an environment variable overrides both, so a deployment can keep one file
and still change a single value per process.
"""
from __future__ import annotations

import os
from configparser import ConfigParser, Error as ParserError
from functools import lru_cache
from pathlib import Path

from platformdirs import user_data_dir

from .globals import APP_NAME, CONFIG_ENV, CONFIG_FILE, DATA_DIR_ENV, SETTINGS


class ConfigError(Exception):
    """The configuration cannot be used as given."""


def set_config_file(path: str) -> None:
    """Use ``path`` as the service INI file for this process and its children."""
    os.environ[CONFIG_ENV] = path
    get_config.cache_clear()


def config_file() -> str:
    """Return the service INI file in use ('' when there is none)."""
    return os.environ.get(CONFIG_ENV, CONFIG_FILE)


@lru_cache(maxsize=None)
def get_config() -> ConfigParser:
    """Return the ConfigParser object with defaults set.

    Unset keys hold the empty string.  Raises :class:`ConfigError` when the
    named file is missing or is not valid INI.
    """
    parser = ConfigParser(interpolation=None)
    for (section, key), (_env, default) in SETTINGS.items():
        if section != 'DEFAULT' and not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, default or '')
    path = config_file()
    if path:
        try:
            with open(path, encoding='utf-8') as handle:
                parser.read_file(handle)
        except OSError as exc:
            raise ConfigError(f'cannot read config file {path}: {exc.strerror}') from exc
        except ParserError as exc:
            raise ConfigError(f'config file {path} is not valid INI: {exc}') from exc
    for (section, key), (env, _default) in SETTINGS.items():
        if env in os.environ:
            parser.set(section, key, os.environ[env])
    return parser


def get_number(section: str, key: str, kind: type = int) -> int | float:
    """Return a numeric setting, or raise :class:`ConfigError` naming it."""
    value = get_config().get(section, key)
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f'[{section}] {key} must be a number, not {value!r}') from None


def data_dir() -> Path:
    """Return the folder for the embedded default's files, creating it on first use."""
    path = Path(os.environ.get(DATA_DIR_ENV) or user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def retry_schedule() -> list[float]:
    """Return the delays (seconds) between attempts; empty means "never retry"."""
    text = get_config().get('notifications', 'retry_schedule')
    try:
        delays = [float(part) for part in text.replace(' ', '').split(',') if part]
    except ValueError:
        raise ConfigError(f'[notifications] retry_schedule must be seconds separated by commas, '
                          f'not {text!r}') from None
    if any(delay < 0 for delay in delays):
        raise ConfigError(f'[notifications] retry_schedule has a negative delay: {text!r}')
    return delays
