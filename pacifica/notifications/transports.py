"""Which kombu transport serves which broker URL, and what each needs installed.

kombu imports a transport only when a connection first uses it, from the
``module:Class`` string registered here; so our transports (and the optional
client libraries behind them) are imported only when configured, never by
importing this package.
"""

from __future__ import annotations

import importlib.util

from kombu.transport import TRANSPORT_ALIASES

from .config import ConfigError

#: The URL scheme of the embedded default: kombu's filesystem transport, adjusted.
SCHEME = 'pacifica-filesystem'
#: The URL scheme of our Redis transport (``redis://`` URLs are mapped to it).
REDIS_SCHEME = 'pacifica-redis'

_ALIASES = {
    SCHEME: f'{__package__}.filesystem_transport:Transport',
    'filesystem': f'{__package__}.filesystem_transport:Transport',
    REDIS_SCHEME: f'{__package__}.redis_transport:Transport',
}

#: Client library each broker scheme needs, and the extra that installs it.
_DRIVERS = {'redis': ('redis', 'redis'), 'rediss': ('redis', 'redis')}


def register() -> None:
    """Make our URL schemes name our transports (idempotent, imports nothing)."""
    TRANSPORT_ALIASES.update(_ALIASES)


def require_driver(url: str) -> None:
    """Raise a one-line :class:`ConfigError` when the broker's client library is missing."""
    scheme = url.split('://', 1)[0].split('+', 1)[0]
    module, extra = _DRIVERS.get(scheme, (None, None))
    if module and importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"[celery] broker_url {scheme}:// needs the {module} package: pip install 'pacifica-notifications[{extra}]'"
        )


def transport_url(url: str) -> str:
    """Map a ``redis://`` URL to our Redis transport; leave any other URL alone."""
    return REDIS_SCHEME + url[len('redis') :] if url.startswith('redis://') else url
