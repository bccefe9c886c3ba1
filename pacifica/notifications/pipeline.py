"""The delivery pipeline as plain functions: match, ask the policy server, deliver, log.

Each step reads what it needs from the database, does its one piece of
work, records the outcome, and returns the :class:`Work` that follows; the
Celery tasks in :mod:`tasks` only run steps and enqueue what they return, so
every step can also run (and be tested) without a worker.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from peewee import IntegrityError

from . import delivery, due, jsonpath
from .config import settings
from .delivery import Reply
from .models import POLICY_SKIPPED, SENDING, BaseModel, EventLog, EventLogMatch, EventMatch, utcnow
from .verdicts import Verdict, policy_verdict, retry_delay, target_verdict

LOG = logging.getLogger(__name__)


@dataclass
class Work:
    """What a step leaves to do: users to ask about, deliveries to make, or itself again later."""

    ask: list[str] = field(default_factory=list)
    deliver: list[tuple[str, int]] = field(default_factory=list)
    retry_in: float | None = None


def live_subscriptions(received: datetime | None = None) -> list[EventMatch]:
    """Every subscription that is neither deleted nor disabled (and existed at ``received``).

    An event is for the subscriptions that existed when it was received, however
    long it waited to be dispatched (a backlog, an outage, the recovery sweep).
    """
    query = EventMatch.select().where(EventMatch.live())
    if received is not None:
        query = query.where(EventMatch.created <= received)
    return list(query)


def match_subscriptions(event: dict, subs: list[EventMatch]) -> list[EventMatch]:
    """The subscriptions whose jsonpath finds something in the event.

    Subscriptions sharing an expression are judged by one evaluation.
    """
    by_path: dict[str, list[EventMatch]] = defaultdict(list)
    for sub in subs:
        by_path[sub.jsonpath].append(sub)
    matched = []
    for text, group in by_path.items():
        try:
            if jsonpath.matches(text, event):
                matched.extend(group)
        except jsonpath.JsonPathError:
            LOG.warning('skipping %d subscription(s) with an unparsable jsonpath %r', len(group), text)
    return matched


def create_log_match(eventmatch: EventMatch, event_log_uuid: object, policy_resp: Reply | None = None) -> EventLogMatch:
    """Return the one log row for this event and subscription, creating it if need be.

    Kept for the seed's module reference (``tasks.create_log_match``): it
    records, and queues nothing (the row has no due time).  The pipeline
    creates its rows in :func:`dispatch_orm_event`.
    """
    where = (EventLogMatch.event_log == event_log_uuid) & (EventLogMatch.event_match == eventmatch.uuid)
    row = EventLogMatch.get_or_none(where)
    if row is None:
        try:
            with BaseModel.atomic():
                row = EventLogMatch.create(event_log=event_log_uuid, event_match=eventmatch.uuid)
        except IntegrityError:
            row = EventLogMatch.get(where)
    if policy_resp is not None:
        row.policy_status_code, row.policy_resp_body = policy_resp.code, policy_resp.body
        row.save()
    return row


def update_log_match(elm_uuid: object, target_resp: Reply, retry_at: datetime | None = None) -> None:
    """Record the target's reply on the log row, and when it is next due (None: finished)."""
    EventLogMatch.update(
        target_status_code=target_resp.code, target_resp_body=target_resp.body, retry_at=retry_at
    ).where(EventLogMatch.uuid == elm_uuid).execute()


def disable_eventmatch(eventmatch_uuid: object, error: str) -> None:
    """Disable the subscription, saying why, until its owner re-enables it."""
    now = utcnow()
    EventMatch.update(disabled=now, updated=now, error=error[:2000]).where(
        (EventMatch.uuid == eventmatch_uuid) & EventMatch.disabled.is_null()
    ).execute()
    LOG.warning('disabled subscription %s: %s', eventmatch_uuid, error)


def dispatch_orm_event(orm_event: EventLog) -> dict[str, list[EventLogMatch]]:
    """Match a logged event against every live subscription; return its undelivered rows by user.

    Rows are created in one statement that skips pairs already logged, so a
    repeated dispatch finds the rows of the first and never doubles them.
    """
    matched = match_subscriptions(json.loads(orm_event.jsondata), live_subscriptions(orm_event.created))
    if not matched:
        return {}
    EventLogMatch.insert_many(
        [
            {'uuid': uuid.uuid4(), 'event_log': orm_event.uuid, 'event_match': sub.uuid, 'created': utcnow()}
            for sub in matched
        ]
    ).on_conflict_ignore().execute()
    users = {sub.uuid: sub.user for sub in matched}
    pending: dict[str, list[EventLogMatch]] = defaultdict(list)
    for row in EventLogMatch.select().where(
        (EventLogMatch.event_log == orm_event.uuid) & EventLogMatch.event_match.in_(list(users))
    ):
        if not row.is_delivered():
            pending[users[row.event_match_id]].append(row)
    return dict(pending)


def dispatch(event_uuid: str) -> Work:
    """Step 1: match the event; ask about each user with matches (or deliver, with no policy).

    An event already dispatched is left alone: a repeated task (a redelivered
    message, or a sweep racing a slow queue) must not start its work twice.
    """
    orm_event = EventLog.get_or_none(EventLog.uuid == event_uuid)
    if orm_event is None or orm_event.retry_at is None:
        return Work()
    pending = dispatch_orm_event(orm_event)
    rows = [row for user_rows in pending.values() for row in user_rows]
    skipped = {} if settings().policy_url else {'policy_status_code': POLICY_SKIPPED}
    due.mark([row.uuid for row in rows], due.deadline(), **skipped)
    due.mark_event(orm_event.uuid, None)
    if not skipped:
        return Work(ask=sorted(pending))
    return Work(deliver=[(str(row.uuid), row.attempts + 1) for row in rows])


def _pending_rows(event_uuid: str, user: str) -> list[EventLogMatch]:
    query = (
        EventLogMatch.select(EventLogMatch, EventMatch)
        .join(EventMatch)
        .where((EventLogMatch.event_log == event_uuid) & (EventMatch.user == user) & EventMatch.live())
    )
    return [row for row in query if not row.is_delivered()]


def query_policy(event_uuid: str, user: str, attempt: int = 1) -> Work:
    """Step 2: one question per user and event; allowed rows go on to delivery."""
    orm_event = EventLog.get_or_none(EventLog.uuid == event_uuid)
    rows = _pending_rows(event_uuid, user) if orm_event else []
    if orm_event is None or not rows:
        return Work()
    reply = delivery.ask_policy(settings().policy_url, user, json.loads(orm_event.jsondata))
    verdict = policy_verdict(reply)
    delay = retry_delay(settings().retry_schedule, attempt, reply.retry_after) if verdict is Verdict.RETRY else None
    if verdict is Verdict.DONE:
        next_due: datetime | None = due.deadline()
    else:
        next_due = None if delay is None else due.deadline(delay)
    due.mark([row.uuid for row in rows], next_due, policy_status_code=reply.code, policy_resp_body=reply.body)
    if verdict is Verdict.DONE:
        return Work(deliver=[(str(row.uuid), row.attempts + 1) for row in rows])
    if verdict is Verdict.DENIED:
        return Work()
    if delay is not None:
        return Work(retry_in=delay)
    for row in rows:
        disable_eventmatch(row.event_match_id, f'policy server {reply.describe()}; gave up after {attempt} attempt(s)')
    return Work()


def _take_attempt(row: EventLogMatch, attempt: int, retake: bool = False) -> bool:
    """Take attempt number ``attempt`` of a delivery; False if it was taken already.

    The attempt stays due until its outcome is recorded: a worker killed
    while sending leaves it to the recovery sweep.  With ``retake`` (the
    broker gave us again a message whose worker died) an attempt that was
    taken but never finished is taken over.
    """
    takeable = EventLogMatch.attempts == attempt - 1
    if retake:
        takeable |= (EventLogMatch.attempts == attempt) & (EventLogMatch.target_status_code == SENDING)
    return (
        EventLogMatch.update(
            attempts=attempt,
            last_attempt=utcnow(),
            retry_at=due.deadline(settings().in_flight),
            target_status_code=SENDING,
        )
        .where((EventLogMatch.uuid == row.uuid) & takeable)
        .execute()
        == 1
    )


def route_event(elm_uuid: str, attempt: int = 1, retake: bool = False) -> Work:
    """Step 3: deliver to one subscription's target, once per attempt number.

    ``retake``: this task's message was delivered before, to a worker that
    died or lost its broker connection before finishing it.
    """
    row = (
        EventLogMatch.select(EventLogMatch, EventMatch, EventLog)
        .join(EventMatch)
        .switch(EventLogMatch)
        .join(EventLog)
        .where(EventLogMatch.uuid == elm_uuid)
        .first()
    )
    if row is None:
        return Work()
    sub = row.event_match
    if row.is_delivered() or not sub.is_live():
        due.mark([row.uuid], None)
        return Work()
    if not _take_attempt(row, attempt, retake):
        return Work()
    event = delivery.with_extensions(json.loads(row.event_log.jsondata), sub.extensions_dict())
    reply = delivery.deliver(sub.target_url, event, sub.auth_dict(), str(row.uuid))
    verdict = target_verdict(reply)
    delay = retry_delay(settings().retry_schedule, attempt, reply.retry_after) if verdict is Verdict.RETRY else None
    update_log_match(row.uuid, reply, None if delay is None else due.deadline(delay))
    if verdict is Verdict.DONE:
        return Work()
    if verdict is Verdict.RETRY:
        if delay is not None:
            return Work(retry_in=delay)
        disable_eventmatch(sub.uuid, f'target {reply.describe()}; gave up after {attempt} attempt(s)')
    else:
        disable_eventmatch(sub.uuid, f'target {reply.describe()}')
    return Work()


def redispatch(event_uuid: str) -> None:
    """Make an event due for dispatch again, its undelivered rows with a fresh retry schedule."""
    rows = EventLogMatch.select().where(EventLogMatch.event_log == event_uuid)
    undelivered = [row.uuid for row in rows if not row.is_delivered()]
    if undelivered:
        EventLogMatch.update(attempts=0).where(EventLogMatch.uuid.in_(undelivered)).execute()
    due.mark_event(event_uuid, due.deadline())
