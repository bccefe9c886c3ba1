"""The Celery tasks module.

Tasks are thin: each runs one step of :mod:`pipeline` inside a database
connection and enqueues the work the step returns.  Run workers with
``celery -A pacifica.notifications.tasks worker``.
"""
from __future__ import annotations

from celery import Celery, Task

from . import pipeline
from .celeryconf import celery_settings
from .delivery import event_auth_to_requests
from .orm import BaseModel
from .pipeline import create_log_match, disable_eventmatch, dispatch_orm_event, update_log_match

__all__ = ['CELERY_APP', 'dispatch_event', 'query_policy', 'route_event', 'dispatch_orm_event',
           'create_log_match', 'update_log_match', 'disable_eventmatch', 'event_auth_to_requests']


class DatabaseTask(Task):
    """A task that holds a database connection while it runs, and only then."""

    def __call__(self, *args, **kwargs):
        BaseModel.database_connect()
        try:
            return super().__call__(*args, **kwargs)
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
