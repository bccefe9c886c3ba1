"""The Celery tasks module.

Tasks are thin: each runs a :mod:`pipeline` function inside a database
connection; work that must wait comes back through :class:`CeleryScheduler`
as countdown tasks.  Run workers with
``celery -A pacifica.notifications.tasks worker``; each worker also runs the
recovery sweep (:func:`recover`) every ``sweep_interval`` seconds (see
:mod:`due` for the rule it keeps).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

from celery import Celery, Task
from peewee import InterfaceError
from peewee import OperationalError as DatabaseDown

from . import due, pipeline, worker
from .celeryconf import celery_settings
from .config import settings
from .delivery import event_auth_to_requests
from .models import BaseModel
from .pipeline import create_log_match, disable_eventmatch, dispatch_orm_event, update_log_match

__all__ = [
    'CELERY_APP',
    'create_log_match',
    'disable_eventmatch',
    'dispatch_event',
    'dispatch_events',
    'dispatch_orm_event',
    'event_auth_to_requests',
    'query_policy',
    'recover',
    'route_event',
    'update_log_match',
]

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


class CeleryScheduler:
    """The pipeline's :class:`pipeline.Scheduler`: work that must wait becomes a countdown task."""

    def ask_later(self, event_uuid: str, user: str, attempt: int, countdown: float) -> None:
        query_policy.apply_async((event_uuid, user, attempt), countdown=countdown)

    def deliver_later(self, elm_uuid: str, attempt: int, countdown: float) -> None:
        route_event.apply_async((elm_uuid, attempt), countdown=countdown)


SCHEDULER = CeleryScheduler()


def _redelivered(task: Task) -> bool:
    """Whether this task's message was given to a worker before (one that died, or lost the broker)."""
    return bool((task.request.delivery_info or {}).get('redelivered'))


@CELERY_APP.task(name='pacifica.notifications.dispatch_event', bind=True)
def dispatch_event(self: Task, event_uuid: str) -> None:
    """Match a logged event, ask the policy server and deliver it: its whole common path."""
    pipeline.dispatch(event_uuid, SCHEDULER, retake=_redelivered(self))


@CELERY_APP.task(name='pacifica.notifications.dispatch_events', bind=True)
def dispatch_events(self: Task, event_uuids: list[str]) -> None:
    """Dispatch several logged events (the events one group commit of ``/receive`` stored)."""
    pipeline.dispatch_many(event_uuids, SCHEDULER, retake=_redelivered(self))


@CELERY_APP.task(name='pacifica.notifications.query_policy', bind=True)
def query_policy(self: Task, event_uuid: str, user: str, attempt: int = 1) -> None:
    """Ask the policy server again whether ``user`` may see the event, then deliver."""
    pipeline.ask(event_uuid, user, attempt, SCHEDULER, retake=_redelivered(self))


@CELERY_APP.task(name='pacifica.notifications.route_event', bind=True)
def route_event(self: Task, elm_uuid: str, attempt: int = 1) -> None:
    """Deliver an event to one subscription's target (attempt number ``attempt``)."""
    pipeline.deliver_one(elm_uuid, attempt, SCHEDULER, retake=_redelivered(self))


def requeue(claimed: due.Claimed) -> None:
    """Queue claimed work (what should start later, with its countdown).

    What cannot be queued (the broker is down) is released, due at once
    again, and the broker client's error raised.
    """
    jobs: list[tuple[Task, tuple, object, list[str], list[str]]] = (
        [(dispatch_event, (event,), event, [event], []) for event in claimed.events]
        + [(query_policy, key, key, [], rows) for key, rows in claimed.asks.items()]
        + [(route_event, item, item, [], [item[0]]) for item in claimed.deliveries]
    )
    for done, (task, args, key, _events, _rows) in enumerate(jobs):
        try:
            task.apply_async(args, countdown=claimed.wait.get(key) or None)
        except Exception:
            left = jobs[done:]
            due.release([e for job in left for e in job[3]], [r for job in left for r in job[4]])
            raise


def recover(cutoff: datetime | None = None) -> due.Claimed:
    """Queue again (a batch of) the work overdue at ``cutoff`` (default: now).

    Needs a database connection; see :func:`requeue` for a broker outage.
    """
    claimed = due.claim_overdue(cutoff)
    requeue(claimed)
    if claimed:
        LOG.warning('recovery sweep queued again %s', claimed.describe())
    return claimed


def recover_all(keep_schedule: bool) -> due.Claimed:
    """Queue again all unfinished work, due or not (see :func:`due.claim_all`)."""
    total = due.Claimed()
    for claimed in due.claim_all(keep_schedule):
        requeue(claimed)
        total.merge(claimed)
    if total:
        LOG.warning('resync queued again %s', total.describe())
    return total


def _with_connection(action: Callable[[], object]) -> Callable[[], None]:
    """Run ``action`` holding this thread's own database connection."""

    def run() -> None:
        BaseModel.database_connect()
        try:
            action()
        finally:
            BaseModel.database_close()

    return run


worker.install(
    CELERY_APP,
    worker.Lifecycle(
        sweep=_with_connection(recover),
        resync=_with_connection(lambda: recover_all(keep_schedule=True)),
        interval=lambda: settings().sweep_interval,
    ),
)
