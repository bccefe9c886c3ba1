"""The delivery pipeline as plain functions: match, ask the policy server, deliver, log.

An event's common path runs in one call, :func:`dispatch`: the event is
matched against the live subscriptions, the policy server is asked once per
user with matches (all users at once), and the allowed deliveries are made
at once by this process's :mod:`sender`, a few per target at a time.  Work
that must wait (a retry on the schedule, a delivery whose target is busy)
goes to a :class:`Scheduler`, which the Celery tasks implement with
countdown tasks and tests implement with a list.  Every step records its
outcome and the work's due time (:mod:`due`), so nothing is lost if the
process dies half-way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import wait
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Callable, Protocol

from peewee import IntegrityError

from . import binding, delivery, due, metrics, statements
from .config import settings
from .delivery import Reply
from .matcher import Snapshot, matcher
from .models import POLICY_SKIPPED, SENDING, BaseModel, EventLog, EventLogMatch, EventMatch, utcnow
from .sealing import SealError
from .sender import sender
from .verdicts import Verdict, policy_verdict, retry_delay, target_verdict

LOG = logging.getLogger(__name__)

#: Seconds a task waits for its deliveries at a time.  Then what waits in
#: line for a stalled target (one of its calls running that long) is queued
#: in the broker, what is being sent finishes on its own (its claim keeps it
#: due until then), and the task waits again for the rest: a line that moves
#: is not a slow target, only a busy moment.
WAIT_FOR_DELIVERIES = 1.0

#: Longest a delivery waits in its target's line, moving or not, before it
#: goes back to the broker; its claim is held this long more than a call can take.
LINE_LIMIT = 10.0


class Scheduler(Protocol):
    """Where work that must wait goes: the Celery tasks queue it with a countdown."""

    def ask_later(self, event_uuid: str, user: str, attempt: int, countdown: float) -> None:
        """Ask the policy server about ``user`` again (attempt number ``attempt``) in ``countdown`` s."""

    def deliver_later(self, elm_uuid: str, attempt: int, countdown: float) -> None:
        """Make attempt number ``attempt`` of a delivery in ``countdown`` seconds."""


@dataclass
class Outcome:
    """What one call of the pipeline did, for the log line it leaves and for tests."""

    matched: int = 0
    asked: int = 0
    denied: int = 0
    delivered: int = 0
    failed: int = 0
    deferred: int = 0
    sending: int = 0
    started: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        """One line: what happened and how long it took."""
        took = (time.monotonic() - self.started) * 1000
        return (
            f'{self.matched} matched, {self.asked} policy question(s), {self.denied} denied, '
            f'{self.delivered} delivered, {self.failed} failed, {self.deferred} deferred, '
            f'{self.sending} still sending ({took:.0f} ms)'
        )


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
    changed = (
        EventMatch.update(disabled=now, updated=now, error=error[:2000])
        .where((EventMatch.uuid == eventmatch_uuid) & EventMatch.disabled.is_null())
        .execute()
    )
    metrics.delivery('disabled', changed)
    LOG.warning('disabled subscription %s: %s', eventmatch_uuid, error)


def dispatch_orm_event(
    orm_event: EventLog, snapshot: Snapshot | None = None, **fields: object
) -> dict[str, list[EventLogMatch]]:
    """Match a logged event against every live subscription; return its undelivered rows by user.

    Rows are created in one statement that skips pairs already logged, so a
    repeated dispatch finds the rows of the first and never doubles them
    (nor touches one that a process is sending, :func:`due.in_flight`);
    new rows get ``fields`` (a due time, say) as they are created.  When
    every row is new, as on an event's first dispatch, they are not read
    back.
    """
    event = json.loads(orm_event.jsondata)
    matched = (snapshot or matcher().current()).match(event, orm_event.created)
    if not matched:
        return {}
    now = utcnow()
    rows = [
        EventLogMatch(uuid=uuid.uuid4(), event_log=orm_event.uuid, event_match=sub, created=now, **fields)
        for sub in matched
    ]
    inserted = statements.insert(rows, ignore_conflicts=True)
    if inserted != len(rows):
        rows = [
            row
            for row in EventLogMatch.select(EventLogMatch, EventMatch)
            .join(EventMatch)
            .where((EventLogMatch.event_log == orm_event.uuid) & EventLogMatch.event_match.in_(matched))
            if not row.is_delivered() and not due.in_flight(row, now)
        ]
        if fields and rows:
            values = {'target_status_code': due.unheld_sql(), **fields}
            EventLogMatch.update(**values).where(EventLogMatch.uuid.in_([row.uuid for row in rows])).execute()
    pending: dict[str, list[EventLogMatch]] = defaultdict(list)
    for row in rows:
        pending[row.event_match.user].append(row)
    return dict(pending)


@dataclass
class _Plan:
    """The work one call of the pipeline does for one event: questions, then deliveries."""

    event_uuid: str
    event: dict
    received: datetime
    outcome: Outcome
    questions: dict[str, list[EventLogMatch]] = field(default_factory=dict)
    ask_attempt: int = 1
    deliveries: list[tuple[EventLogMatch, int | None, dict]] = field(default_factory=list)


def dispatch(event_uuid: str, scheduler: Scheduler, retake: bool = False) -> Outcome:
    """Match a logged event, ask the policy server, deliver: the event's whole common path."""
    outcomes = dispatch_many([event_uuid], scheduler, retake)
    return outcomes[0] if outcomes else Outcome()


def dispatch_many(event_uuids: list[str], scheduler: Scheduler, retake: bool = False) -> list[Outcome]:
    """Dispatch several logged events together: every policy question at once, then every delivery.

    An event already dispatched is left alone: a repeated task (a sweep
    racing a slow queue) must not start its work twice.  An event stays due
    until its work here is done, so a worker that dies half-way leaves it to
    be dispatched again (``retake``: this is such a second try), which
    resumes what is not done.
    """
    policy_url = settings().policy_url
    skipped = {} if policy_url else {'policy_status_code': POLICY_SKIPPED}
    snapshot = matcher().current()  # the events were received before now
    events = {str(event.uuid): event for event in EventLog.select().where(EventLog.uuid.in_(event_uuids))}
    plans = []
    for event_uuid in event_uuids:
        orm_event = events.get(str(event_uuid))
        if orm_event is None or orm_event.retry_at is None:
            continue
        try:
            pending = dispatch_orm_event(orm_event, snapshot, retry_at=due.deadline(), **skipped)
        except IntegrityError:
            # This process's copy names a subscription no longer in the table (removed by
            # hand, or the table made anew): compare the whole copy with it, then again.
            snapshot = matcher().current(full=True)
            pending = dispatch_orm_event(orm_event, snapshot, retry_at=due.deadline(), **skipped)
        plan = _Plan(
            str(event_uuid),
            json.loads(orm_event.jsondata),
            orm_event.created,
            Outcome(matched=sum(map(len, pending.values()))),
        )
        if skipped:
            plan.deliveries = [(row, None, {}) for rows in pending.values() for row in rows]
        else:
            plan.questions = pending
        plans.append(plan)
    _carry_out(plans, scheduler, retake)
    if plans:
        EventLog.update(retry_at=None).where(EventLog.uuid.in_([plan.event_uuid for plan in plans])).execute()
    for plan in plans:
        LOG.info('event %s: %s', plan.event_uuid, plan.outcome.describe())
    return [plan.outcome for plan in plans]


def ask(event_uuid: str, user: str, attempt: int, scheduler: Scheduler, retake: bool = False) -> Outcome:
    """Ask the policy server about one user again (a retry, or work the sweep found), then deliver."""
    orm_event = EventLog.get_or_none(EventLog.uuid == event_uuid)
    rows = _pending_rows(event_uuid, user) if orm_event else []
    if orm_event is None or not rows:
        return Outcome()
    plan = _Plan(event_uuid, json.loads(orm_event.jsondata), orm_event.created, Outcome(), {user: rows}, attempt)
    _carry_out([plan], scheduler, retake)
    return plan.outcome


def deliver_one(elm_uuid: str, attempt: int, scheduler: Scheduler, retake: bool = False) -> Outcome:
    """Make attempt number ``attempt`` of one delivery (a retry, a deferred or a recovered one)."""
    row = (
        EventLogMatch.select(EventLogMatch, EventMatch, EventLog)
        .join(EventMatch)
        .switch(EventLogMatch)
        .join(EventLog)
        .where(EventLogMatch.uuid == elm_uuid)
        .first()
    )
    if row is None:
        return Outcome()
    if row.is_delivered() or not row.event_match.is_live():
        due.mark([row.uuid], None)
        return Outcome()
    plan = _Plan(
        str(row.event_log_id),
        json.loads(row.event_log.jsondata),
        row.event_log.created,
        Outcome(),
        deliveries=[(row, attempt, {})],
    )
    _carry_out([plan], scheduler, retake)
    return plan.outcome


def _pending_rows(event_uuid: str, user: str) -> list[EventLogMatch]:
    query = (
        EventLogMatch.select(EventLogMatch, EventMatch)
        .join(EventMatch)
        .where((EventLogMatch.event_log == event_uuid) & (EventMatch.user == user) & EventMatch.live())
    )
    now = utcnow()
    return [row for row in query if not row.is_delivered() and not due.in_flight(row, now)]


def _carry_out(plans: list[_Plan], scheduler: Scheduler, retake: bool) -> None:
    """Ask every question of these plans at once, then make every delivery at once."""
    url = settings().policy_url
    asked = [
        (plan, user, sender().submit(url, partial(_ask_policy, url, user, encoded)))
        for plan, encoded in ((plan, delivery.encode(plan.event)) for plan in plans if plan.questions)
        for user in plan.questions
    ]
    for plan, user, question in asked:
        plan.outcome.asked += 1
        reply = question.result()
        allowed = _record_answer(plan, user, reply, scheduler)
        answer = {'policy_status_code': reply.code, 'policy_resp_body': reply.body}
        plan.deliveries.extend((row, None, answer) for row in allowed)
    jobs: list[_Delivery] = []
    for plan in plans:
        body = delivery.encode(plan.event) if plan.deliveries else b''
        jobs.extend(
            _Delivery(plan, row, body, attempt or row.attempts + 1, scheduler, answer)
            for row, attempt, answer in plan.deliveries
        )
    _record(_await(_take_attempts(jobs, retake)))


def _ask_policy(url: str, user: str, encoded: bytes) -> Reply:
    """Ask the policy server (in a sender thread), timing its answer."""
    began = time.monotonic()
    reply = delivery.ask_policy(url, user, encoded)
    metrics.policy_answered_in(time.monotonic() - began)
    return reply


def _await(claimed: list[_Delivery]) -> list[_Delivery]:
    """Send the claimed deliveries and wait for them (see :data:`WAIT_FOR_DELIVERIES`); return those answered.

    A delivery still in line for a stalled target, or in line past
    :data:`LINE_LIMIT`, goes back to the broker; one being sent is left to
    record itself.
    """
    calls = sender()
    began = time.monotonic()
    waiting = [(job, calls.submit(job.row.event_match.target_url, job.send)) for job in claimed]
    finished: list[_Delivery] = []
    defer = max(1.0, settings().read_timeout / 4)
    while waiting:
        wait([future for _job, future in waiting], timeout=WAIT_FOR_DELIVERIES)
        line_open = time.monotonic() - began < LINE_LIMIT
        in_line = []
        for job, future in waiting:
            target = job.row.event_match.target_url
            with job.lock:
                if job.reply is not None:
                    finished.append(job)
                    continue
                if line_open and not future.running() and not calls.stalled(target, WAIT_FOR_DELIVERIES):
                    in_line.append((job, future))
                    continue
                job.detached = True
            if calls.withdraw(target, future):
                job.put_back(defer)
            else:
                job.outcome.sending += 1
        waiting = in_line
    return finished


def _record_answer(plan: _Plan, user: str, reply: Reply, scheduler: Scheduler) -> list[EventLogMatch]:
    """Record the policy server's answer about ``user`` on their rows; return the rows allowed.

    An allowed row's answer is recorded with the claim of its delivery (:func:`_take_attempts`).
    """
    rows, attempt = plan.questions[user], plan.ask_attempt
    verdict = policy_verdict(reply)
    delay = retry_delay(settings().retry_schedule, attempt, reply.retry_after) if verdict is Verdict.RETRY else None
    answer = {'policy_status_code': reply.code, 'policy_resp_body': reply.body}
    uuids = [row.uuid for row in rows]
    if verdict is Verdict.DONE:
        return rows
    if verdict is Verdict.DENIED:
        due.mark(uuids, None, **answer)
        plan.outcome.denied += len(rows)
        metrics.delivery('denied', len(rows))
    elif delay is not None:
        due.mark(uuids, due.deadline(delay), **answer)
        _later(scheduler.ask_later, plan.event_uuid, user, attempt + 1, delay)
    else:
        due.mark(uuids, None, **answer)
        for row in rows:
            disable_eventmatch(
                row.event_match_id, f'policy server {reply.describe()}; gave up after {attempt} attempt(s)'
            )
    return []


class _Delivery:
    """One delivery attempt: claimed and recorded in batches by its task, sent by a sender thread.

    If the task stops waiting before the answer comes (see :data:`WAIT_FOR_DELIVERIES`),
    the sender thread records the outcome itself.
    """

    def __init__(self, plan: _Plan, row: EventLogMatch, body: bytes, number: int, scheduler: Scheduler, answer: dict):
        self.outcome, self.event, self.received = plan.outcome, plan.event, plan.received
        self.row, self.number, self.scheduler = row, number, scheduler
        self.body = body  # the event encoded once for every subscription without extensions
        self.answer = answer  # the policy server's answer, recorded with the claim
        self.lock = threading.Lock()
        self.reply: Reply | None = None
        self.detached = False
        self.stamp: datetime | None = None

    def send(self) -> None:
        """Make the call (in a sender thread); record it here if the task has gone."""
        sub = self.row.event_match
        try:
            headers, body = delivery.render(self.event, sub.delivery_mode, sub.extensions_dict(), self.body)
            reply = delivery.deliver(
                sub.target_url, body, headers, sub.auth_dict(), str(self.row.uuid), sub.signing_secrets()
            )
        except SealError as exc:
            reply = Reply(None, '', error=f'unsigned: {exc}')
        with self.lock:
            self.reply = reply
            if not self.detached:
                return
        binding.connect()
        try:
            _record([self])
        finally:
            binding.close()

    def put_back(self, countdown: float) -> None:
        """Give back a claimed attempt that never left (its target was busy) and queue it for later."""
        EventLogMatch.update(
            attempts=self.number - 1,
            target_status_code=due.unheld(self.row.target_status_code),
            retry_at=due.deadline(countdown),
        ).where((EventLogMatch.uuid == self.row.uuid) & (EventLogMatch.last_attempt == self.stamp)).execute()
        _later(self.scheduler.deliver_later, str(self.row.uuid), self.number, countdown)
        self.outcome.deferred += 1


def _take_attempts(jobs: list[_Delivery], retake: bool) -> list[_Delivery]:
    """Claim each job's attempt number in the log; return the jobs whose attempt was still to take.

    The claims are held for as long as a call can take (:func:`due.held_for`):
    if this process dies while sending, the recovery sweep finds them soon
    after.  A held attempt is never taken.  With ``retake`` (the broker gave
    us again a message whose worker may have died) an attempt that was taken
    but whose hold ran out unfinished is taken over.
    """
    if not jobs:
        return []
    stamp = utcnow()
    groups: dict[tuple, list[_Delivery]] = defaultdict(list)
    for job in jobs:
        groups[(job.number, tuple(sorted(job.answer.items())))].append(job)
    hold = due.held_for(settings().in_flight + LINE_LIMIT + WAIT_FOR_DELIVERIES)
    all_taken = True
    for (number, answer), group in groups.items():
        takeable = EventLogMatch.attempts == number - 1
        if retake:
            takeable |= (EventLogMatch.attempts == number) & (EventLogMatch.target_status_code == SENDING)
        takeable &= due.not_in_flight(stamp)
        count = (
            EventLogMatch.update(
                attempts=number, last_attempt=stamp, retry_at=hold, target_status_code=SENDING, **dict(answer)
            )
            .where(EventLogMatch.uuid.in_([job.row.uuid for job in group]) & takeable)
            .execute()
        )
        all_taken = all_taken and count == len(group)
    for job in jobs:
        job.stamp = stamp
    if all_taken:
        return jobs
    taken = {
        row.uuid
        for row in EventLogMatch.select(EventLogMatch.uuid).where(
            EventLogMatch.uuid.in_([job.row.uuid for job in jobs]) & (EventLogMatch.last_attempt == stamp)
        )
    }
    for job in jobs:
        if job.row.uuid not in taken and job.answer:  # another process has it: keep the answer all the same
            EventLogMatch.update(**job.answer).where(EventLogMatch.uuid == job.row.uuid).execute()
    return [job for job in jobs if job.row.uuid in taken]


def _record(jobs: list[_Delivery]) -> None:
    """Record answers in one transaction, then plan what follows each: done, retry, or disable.

    Deliveries that got the same answer are recorded by one statement.
    """
    if not jobs:
        return
    retries: list[tuple[_Delivery, float]] = []
    done: dict[tuple[str, str], list[object]] = defaultdict(list)
    with BaseModel.atomic():
        for job in jobs:
            reply = job.reply
            assert reply is not None
            verdict = target_verdict(reply)
            if verdict is Verdict.DONE:
                done[(reply.code, reply.body)].append(job.row.uuid)
                job.outcome.delivered += 1
                metrics.delivery('delivered')
                metrics.delivered_after(job.received)
                continue
            job.outcome.failed += 1
            sub = job.row.event_match
            delay = retry_delay(settings().retry_schedule, job.number, reply.retry_after)
            if verdict is not Verdict.RETRY:
                delay = None
            metrics.delivery('failed' if delay is None else 'retried')
            update_log_match(job.row.uuid, reply, None if delay is None else due.deadline(delay))
            if delay is not None:
                retries.append((job, delay))
            elif verdict is Verdict.RETRY:
                disable_eventmatch(sub.uuid, f'target {reply.describe()}; gave up after {job.number} attempt(s)')
            else:
                disable_eventmatch(sub.uuid, f'target {reply.describe()}')
        for (code, body), uuids in done.items():
            EventLogMatch.update(target_status_code=code, target_resp_body=body, retry_at=None).where(
                EventLogMatch.uuid.in_(uuids)
            ).execute()
    for job, delay in retries:
        _later(job.scheduler.deliver_later, str(job.row.uuid), job.number + 1, delay)


def _later(schedule: Callable[..., None], *args: object) -> None:
    """Hand work to the scheduler; if the broker is down it stays due, for the sweep."""
    try:
        schedule(*args)
    except Exception as exc:  # noqa: BLE001 - whatever the broker client raises; the log row keeps it due
        LOG.warning('could not queue %s%r (it stays due): %r', getattr(schedule, '__name__', schedule), args, exc)


def redispatch(event_uuid: str) -> None:
    """Make an event due for dispatch again, its undelivered rows with a fresh retry schedule."""
    rows = EventLogMatch.select().where(EventLogMatch.event_log == event_uuid)
    undelivered = [row.uuid for row in rows if not row.is_delivered()]
    if undelivered:
        EventLogMatch.update(attempts=0).where(EventLogMatch.uuid.in_(undelivered)).execute()
    due.mark_event(event_uuid, due.deadline())
