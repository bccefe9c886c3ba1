"""The Celery tasks module.

Tasks are thin: each runs one step of :mod:`pipeline` inside a database
connection and enqueues the work the step returns.  Run workers with
``celery -A pacifica.notifications.tasks worker``; each worker also runs the
recovery sweep (:func:`recover`) every ``sweep_interval`` seconds.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime

from celery import Celery, Task
from celery.signals import celeryd_init, worker_ready, worker_shutdown
from celery.utils.nodenames import default_nodename, nodename, nodesplit
from peewee import InterfaceError
from peewee import OperationalError as DatabaseDown

from . import pipeline, recovery
from .celeryconf import celery_settings
from .delivery import event_auth_to_requests
from .orm import BaseModel
from .pipeline import create_log_match, disable_eventmatch, dispatch_orm_event, update_log_match
from .sweeper import Sweeper

__all__ = ['CELERY_APP', 'dispatch_event', 'query_policy', 'route_event', 'dispatch_orm_event',
           'create_log_match', 'update_log_match', 'disable_eventmatch', 'event_auth_to_requests',
           'recover']

LOG = logging.getLogger(__name__)

#: Longest wait (seconds) between tries of a task that found the database down.
MAX_DATABASE_WAIT = 30


class DatabaseTask(Task):
    """A task that holds a database connection while it runs, and only then.

    A task that finds the database down is tried again later, with growing
    waits, instead of failing: the recovery sweep would catch it too, but
    only after ``recover_after`` seconds.
    """

    max_retries = None

    def __call__(self, *args, **kwargs):
        try:
            BaseModel.database_connect()
            return super().__call__(*args, **kwargs)
        except (DatabaseDown, InterfaceError) as exc:
            wait = min(MAX_DATABASE_WAIT, 2 ** min(self.request.retries, 5))
            LOG.warning('%s: database unavailable, trying again in %s s: %s', self.name, wait, exc)
            raise self.retry(exc=exc, countdown=wait)
        finally:
            BaseModel.database_close()


CELERY_APP = Celery('pacifica.notifications', task_cls=DatabaseTask)
CELERY_APP.add_defaults(celery_settings)
app = CELERY_APP


def _enqueue(event_uuid: str, work: pipeline.Work) -> None:
    for user in work.ask:
        query_policy.delay(event_uuid, user)
    for elm_uuid, attempt in work.deliver:
        route_event.delay(elm_uuid, attempt)


@CELERY_APP.task(name='pacifica.notifications.dispatch_event')
def dispatch_event(event_uuid: str) -> None:
    """Match a logged event against every subscription and start its deliveries."""
    _enqueue(event_uuid, pipeline.dispatch(event_uuid))


@CELERY_APP.task(name='pacifica.notifications.query_policy')
def query_policy(event_uuid: str, user: str, attempt: int = 1) -> None:
    """Ask the policy server once whether ``user`` may see the event."""
    work = pipeline.query_policy(event_uuid, user, attempt)
    _enqueue(event_uuid, work)
    if work.retry_in is not None:
        query_policy.apply_async((event_uuid, user, attempt + 1), countdown=work.retry_in)


@CELERY_APP.task(name='pacifica.notifications.route_event')
def route_event(elm_uuid: str, attempt: int = 1) -> None:
    """Deliver an event to one subscription's target (attempt number ``attempt``)."""
    work = pipeline.route_event(elm_uuid, attempt)
    if work.retry_in is not None:
        route_event.apply_async((elm_uuid, attempt + 1), countdown=work.retry_in)


def recover(cutoff: datetime | None = None) -> recovery.Found:
    """Queue again the work due by ``cutoff`` (default: now) whose tasks never ran.

    What cannot be queued (the broker is down) is made due at once again,
    and the broker client's error raised.  Needs a database connection.
    """
    found = recovery.sweep(cutoff)
    jobs = ([(dispatch_event, (event,), [event], []) for event in found.events]
            + [(query_policy, key, [], rows) for key, rows in found.asks.items()]
            + [(route_event, item, [], [item[0]]) for item in found.deliveries])
    for done, (task, args, _events, _rows) in enumerate(jobs):
        try:
            task.delay(*args)
        except Exception:
            left = jobs[done:]
            recovery.release([e for job in left for e in job[2]], [r for job in left for r in job[3]])
            raise
    if found:
        LOG.warning('recovery sweep queued again %s', found.describe())
    return found


def _sweep_once() -> None:
    BaseModel.database_connect()
    try:
        recover()
    finally:
        BaseModel.database_close()


_SWEEPER: list[Sweeper] = []


@celeryd_init.connect
def _distinct_node_name(instance=None, **_kwargs) -> None:
    """Name a worker ``celery.<pid>@<host>`` unless ``-n`` names it.

    Remote control (``celery inspect``, ``celery control``, Flower) reaches
    each worker through a queue named after its node name: two workers on one
    host with Celery's default name would share it, and a command would reach
    only one of them.
    """
    if instance is not None and instance.hostname == default_nodename(None):
        instance.hostname = nodename(f'celery.{os.getpid()}', nodesplit(instance.hostname)[1])


@worker_ready.connect
def _start_sweeper(**_kwargs) -> None:
    sweeper = Sweeper(_sweep_once, recovery.sweep_interval())
    sweeper.start()
    _SWEEPER.append(sweeper)


@worker_shutdown.connect
def _stop_sweeper(**_kwargs) -> None:
    while _SWEEPER:
        _SWEEPER.pop().stop()

