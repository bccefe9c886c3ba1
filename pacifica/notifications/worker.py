"""What a Celery worker process runs besides its tasks.

- A distinct node name, so that remote control (``celery inspect``,
  ``celery control``, Flower) reaches every worker on a host.
- The recovery sweep, in a thread with its own database connection, every
  ``sweep_interval`` seconds.
- A check, each time the worker (re)connects to the broker, that the broker
  kept its queued work (:mod:`canary`); if it did not, the sweep thread
  queues all unfinished work again at once, each piece when it was meant to
  start.
- Quiet logs: Celery's line per task received and per task done only at
  ``--loglevel DEBUG``; the pipeline writes one INFO line per event.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from celery import Celery, bootsteps
from celery.signals import after_setup_logger, celeryd_init, worker_ready, worker_shutdown
from celery.utils.nodenames import default_nodename, nodename, nodesplit

from . import binding, sealing, subscriptions
from .canary import broker_remembers
from .config import settings
from .sweeper import Sweeper

LOG = logging.getLogger(__name__)


def _distinct_node_name(instance: Any = None, **_kwargs: Any) -> None:
    """Name a worker ``celery.<pid>@<host>`` unless ``-n`` names it.

    Remote control reaches each worker through a queue named after its node
    name: two workers on one host with Celery's default name would share it,
    and a command would reach only one of them.
    """
    if instance is not None and instance.hostname == default_nodename(None):
        instance.hostname = nodename(f'celery.{os.getpid()}', nodesplit(instance.hostname)[1])


#: Celery's loggers that write a line per task.
PER_TASK_LOGGERS = ('celery.worker.strategy', 'celery.app.trace')


def _quiet_per_task_lines(loglevel: int | str = logging.INFO, **_kwargs: Any) -> None:
    """Keep Celery's per-task lines for ``--loglevel DEBUG``: at INFO they would be most of the log."""
    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    if isinstance(level, int) and level > logging.DEBUG:
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


class Lifecycle:
    """The sweep thread of this worker process, and what asks it to resync."""

    def __init__(self, sweep: Callable[[], object], resync: Callable[[], object], interval: Callable[[], float]):
        self.sweeper = Sweeper(sweep, resync)
        self.interval = interval

    def start(self, **_kwargs: Any) -> None:
        _say_how_secrets_are_kept()
        self.sweeper.start(self.interval())

    def stop(self, **_kwargs: Any) -> None:
        self.sweeper.stop()

    def check_broker(self, app: Celery) -> None:
        """Ask for a resync if the broker forgot its queued work."""
        if not broker_remembers(app):
            LOG.info(
                'the broker holds no canary (new, or restarted without its data): queueing all unfinished work again'
            )
            self.sweeper.request_resync()


def _say_how_secrets_are_kept() -> None:
    """Warn when signing secrets are stored unencrypted; say so when the configured keys cannot open them."""
    if not settings().secret_key:
        LOG.warning(sealing.NO_KEY_WARNING)
    try:
        binding.connect()
        subscriptions.check_secrets()
    except sealing.SealError as exc:
        LOG.error('[notifications] secret_key (SECRET_KEY): %s; deliveries cannot be signed', exc)
    except Exception as exc:  # noqa: BLE001 - the database may be down; deliveries will say so then
        LOG.info('could not check the signing secrets now: %s', exc)
    finally:
        binding.close()


def install(app: Celery, lifecycle: Lifecycle) -> None:
    """Wire the worker's node name, sweep thread and broker check into ``app``."""

    class BrokerCheck(bootsteps.StartStopStep):
        """Run the broker check each time the consumer (re)connects."""

        requires = ('celery.worker.consumer.connection:Connection',)

        def start(self, parent: Any) -> None:
            try:
                lifecycle.check_broker(parent.app)
            except Exception:
                LOG.exception('broker check failed; the periodic sweep still runs')

    app.steps['consumer'].add(BrokerCheck)
    celeryd_init.connect(_distinct_node_name, weak=False)
    after_setup_logger.connect(_quiet_per_task_lines, weak=False)
    worker_ready.connect(lifecycle.start, weak=False)
    worker_shutdown.connect(lifecycle.stop, weak=False)
