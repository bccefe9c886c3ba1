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

from peewee import IntegrityError

from . import delivery, jsonpath
from .config import get_config, retry_schedule
from .delivery import Reply
from .orm import BaseModel, EventLog, EventLogMatch, EventMatch, utcnow
from .verdicts import Verdict, policy_verdict, retry_delay, target_verdict

LOG = logging.getLogger(__name__)

#: What ``policy_status_code`` says when no policy server is configured.
POLICY_SKIPPED = 'skipped'


@dataclass
class Work:
    """What a step leaves to do: users to ask about, deliveries to make, or itself again later."""

    ask: list[str] = field(default_factory=list)
    deliver: list[tuple[str, int]] = field(default_factory=list)
    retry_in: float | None = None


def policy_url() -> str:
    """The configured policy server ('' when deliveries need no permission)."""
    return get_config().get('notifications', 'policy_url')


def live_subscriptions() -> list[EventMatch]:
    """Every subscription that is neither deleted nor disabled."""
    return list(EventMatch.select().where(EventMatch.deleted.is_null() & EventMatch.disabled.is_null()))


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


def create_log_match(eventmatch: EventMatch, event_log_uuid, policy_resp: Reply | None = None) -> EventLogMatch:
    """Return the one log row for this event and subscription, creating it if need be."""
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


def update_log_match(elm_uuid, target_resp: Reply) -> None:
    """Record the target's reply on the log row."""
    EventLogMatch.update(target_status_code=target_resp.code, target_resp_body=target_resp.body).where(
        EventLogMatch.uuid == elm_uuid).execute()


def disable_eventmatch(eventmatch_uuid, error: str) -> None:
    """Disable the subscription, saying why, until its owner re-enables it."""
    now = utcnow()
    EventMatch.update(disabled=now, updated=now, error=error[:2000]).where(
        (EventMatch.uuid == eventmatch_uuid) & EventMatch.disabled.is_null()).execute()
    LOG.warning('disabled subscription %s: %s', eventmatch_uuid, error)


def dispatch_orm_event(orm_event: EventLog) -> dict[str, list[EventLogMatch]]:
    """Match a logged event against every live subscription; return its undelivered rows by user.

    Rows are created in one statement that skips pairs already logged, so a
    repeated dispatch finds the rows of the first and never doubles them.
    """
    matched = match_subscriptions(json.loads(orm_event.jsondata), live_subscriptions())
    if not matched:
        return {}
    EventLogMatch.insert_many(
        [{'uuid': uuid.uuid4(), 'event_log': orm_event.uuid, 'event_match': sub.uuid, 'created': utcnow()}
         for sub in matched]).on_conflict_ignore().execute()
    users = {sub.uuid: sub.user for sub in matched}
    pending: dict[str, list[EventLogMatch]] = defaultdict(list)
    for row in EventLogMatch.select().where(
            (EventLogMatch.event_log == orm_event.uuid) & EventLogMatch.event_match.in_(list(users))):
        if not row.is_delivered():
            pending[users[row.event_match_id]].append(row)
    return dict(pending)


def dispatch(event_uuid: str) -> Work:
    """Step 1: match the event; ask about each user with matches (or deliver, with no policy)."""
    orm_event = EventLog.get_or_none(EventLog.uuid == event_uuid)
    if orm_event is None:
        return Work()
    pending = dispatch_orm_event(orm_event)
    if policy_url():
        return Work(ask=sorted(pending))
    rows = [row for user_rows in pending.values() for row in user_rows]
    EventLogMatch.update(policy_status_code=POLICY_SKIPPED).where(
        EventLogMatch.uuid.in_([row.uuid for row in rows])).execute()
    return Work(deliver=[(str(row.uuid), row.attempts + 1) for row in rows])


def _pending_rows(event_uuid: str, user: str) -> list[EventLogMatch]:
    query = (EventLogMatch.select(EventLogMatch, EventMatch).join(EventMatch)
             .where((EventLogMatch.event_log == event_uuid) & (EventMatch.user == user)
                    & EventMatch.deleted.is_null() & EventMatch.disabled.is_null()))
    return [row for row in query if not row.is_delivered()]


def query_policy(event_uuid: str, user: str, attempt: int = 1) -> Work:
    """Step 2: one question per user and event; allowed rows go on to delivery."""
    orm_event = EventLog.get_or_none(EventLog.uuid == event_uuid)
    rows = _pending_rows(event_uuid, user) if orm_event else []
    if not rows:
        return Work()
    reply = delivery.ask_policy(policy_url(), user, json.loads(orm_event.jsondata))
    EventLogMatch.update(policy_status_code=reply.code, policy_resp_body=reply.body).where(
        EventLogMatch.uuid.in_([row.uuid for row in rows])).execute()
    verdict = policy_verdict(reply)
    if verdict is Verdict.DONE:
        return Work(deliver=[(str(row.uuid), row.attempts + 1) for row in rows])
    if verdict is Verdict.DENIED:
        return Work()
    delay = retry_delay(retry_schedule(), attempt, reply.retry_after)
    if delay is not None:
        return Work(retry_in=delay)
    for row in rows:
        disable_eventmatch(row.event_match_id,
                           f'policy server {reply.describe()}; gave up after {attempt} attempt(s)')
    return Work()


def _claim(row: EventLogMatch, attempt: int) -> bool:
    """Take attempt number ``attempt`` of a delivery; False if it was taken already."""
    return EventLogMatch.update(attempts=attempt, last_attempt=utcnow()).where(
        (EventLogMatch.uuid == row.uuid) & (EventLogMatch.attempts == attempt - 1)).execute() == 1


def route_event(elm_uuid: str, attempt: int = 1) -> Work:
    """Step 3: deliver to one subscription's target, once per attempt number."""
    row = (EventLogMatch.select(EventLogMatch, EventMatch, EventLog).join(EventMatch)
           .switch(EventLogMatch).join(EventLog).where(EventLogMatch.uuid == elm_uuid).first())
    if row is None or row.is_delivered():
        return Work()
    sub = row.event_match
    if sub.deleted is not None or sub.disabled is not None or not _claim(row, attempt):
        return Work()
    event = delivery.with_extensions(json.loads(row.event_log.jsondata), sub.extensions_dict())
    reply = delivery.deliver(sub.target_url, event, sub.auth_dict(), str(row.uuid))
    update_log_match(row.uuid, reply)
    verdict = target_verdict(reply)
    if verdict is Verdict.DONE:
        return Work()
    if verdict is Verdict.RETRY:
        delay = retry_delay(retry_schedule(), attempt, reply.retry_after)
        if delay is not None:
            return Work(retry_in=delay)
        disable_eventmatch(sub.uuid, f'target {reply.describe()}; gave up after {attempt} attempt(s)')
    else:
        disable_eventmatch(sub.uuid, f'target {reply.describe()}')
    return Work()


def redispatch(event_uuid: str) -> None:
    """Give an event's undelivered rows a fresh retry schedule before dispatching it again."""
    rows = EventLogMatch.select().where(EventLogMatch.event_log == event_uuid)
    undelivered = [row.uuid for row in rows if not row.is_delivered()]
    if undelivered:
        EventLogMatch.update(attempts=0).where(EventLogMatch.uuid.in_(undelivered)).execute()
