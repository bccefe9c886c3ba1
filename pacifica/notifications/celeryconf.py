"""Celery settings derived from the service configuration.

With no ``broker_url`` configured the embedded default is used: kombu's
filesystem transport in the data folder, which needs no server and keeps
queued work across restarts.  Results are never kept: nothing reads them.
"""

from __future__ import annotations

from . import transports
from .config import ConfigError, data_dir, settings
from .database import configured_url, database_from_url
from .globals import APP_NAME

EMBEDDED_BROKER = f'{transports.SCHEME}://localhost/'


def broker_url() -> str:
    """The configured broker, or the embedded one (its client library checked)."""
    url = settings().broker_url or EMBEDDED_BROKER
    transports.require_driver(url)
    return url


def _is_filesystem(url: str) -> bool:
    return url.startswith(('filesystem:', f'{transports.SCHEME}:'))


def is_embedded() -> bool:
    """Whether work goes through the embedded broker (and so needs our own worker)."""
    return _is_filesystem(broker_url())


def _transport_options(url: str) -> dict:
    if _is_filesystem(url):
        folder = data_dir() / 'broker'
        for name in ('queue', 'control'):
            (folder / name).mkdir(parents=True, exist_ok=True)
        return {
            'data_folder_in': str(folder / 'queue'),
            'data_folder_out': str(folder / 'queue'),
            'control_folder': str(folder / 'control'),
            'polling_interval': 0.05,  # a fallback: writes ring the doorbell
        }
    if url.startswith(('redis', 'rediss')):
        # Unacknowledged work returns to the queue after this long; it must
        # outlast the longest scheduled retry or the retry would run twice.
        # A consumer left on a dead connection notices it only through
        # kombu's health check, so check every few seconds; and a publish
        # must not wait for ever on a connection that is gone.
        # Every few seconds each consumer says it is alive and gives back
        # what silent ones held (see redis_transport).
        return {
            'visibility_timeout': max([3600.0, *settings().retry_schedule]) * 2,
            'health_check_interval': 5,
            'socket_timeout': 15,
            'socket_connect_timeout': 5,
            'unacked_restore_interval': 5,
        }
    return {}


def celery_settings() -> dict:
    """Everything Celery needs, read from our configuration when first asked.

    A setting that cannot be used stops the process with one line: Celery
    first asks while parsing a worker's command line, where an exception
    would be a traceback.
    """
    try:
        return _settings()
    except ConfigError as exc:
        raise SystemExit(f'{APP_NAME}: cannot start: {exc}') from None


def _settings() -> dict:
    config = settings()
    database_from_url(configured_url())  # checked here too: a worker starts nowhere else
    url = broker_url()
    transports.register()
    mapped = transports.transport_url(url)
    celery = {
        # The celery command line reads BROKER_URL into broker_url itself,
        # unmapped; the read and write URLs win over it.
        'broker_url': mapped,
        'broker_read_url': mapped,
        'broker_write_url': mapped,
        'broker_transport_options': _transport_options(url),
        'broker_connection_retry_on_startup': True,
        'broker_connection_timeout': 4.0,
        'task_default_queue': config.queue,
        'worker_pool': config.worker_pool,
        'worker_concurrency': config.worker_concurrency,
        'task_serializer': 'json',
        'accept_content': ['json'],
        'task_ignore_result': True,
        'task_acks_late': True,
        'task_reject_on_worker_lost': True,
        'worker_prefetch_multiplier': 1,
        # After a broker connection loss: unacked tasks come back from the
        # broker anyway, so stop them rather than let them hold the worker's
        # prefetch slots, and take work at full prefetch straight away.
        'worker_cancel_long_running_tasks_on_connection_loss': True,
        'worker_enable_prefetch_count_reduction': False,
        'worker_hijack_root_logger': False,
    }
    if _is_filesystem(url):
        # The filesystem transport fetches only up to the prefetch limit per
        # poll, so a limit of one per thread caps a worker at a few dozen tasks
        # a second; what a worker holds returns to the queue if it dies.
        celery['worker_prefetch_multiplier'] = 4
    if config.backend_url:
        celery['result_backend'] = config.backend_url
    return celery
