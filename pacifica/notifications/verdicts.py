"""Pure decisions about replies: delivered, retry, or give up; and when to try again."""

from __future__ import annotations

import random
from collections.abc import Sequence
from enum import Enum

from .delivery import Reply

#: Target statuses worth retrying besides 5xx: timeout and rate limiting.
RETRY_STATUSES = frozenset({408, 429})

#: Longest wait a ``Retry-After`` header can impose (one day).
MAX_RETRY_AFTER = 86400.0


class Verdict(Enum):
    """What a reply means for the work that asked."""

    DONE = 'done'  # target took it / policy allowed
    DENIED = 'denied'  # policy said no: logged, not delivered, not retried
    RETRY = 'retry'  # try again on the retry schedule
    REJECTED = 'rejected'  # target refused for good (410 Gone, any other 4xx): disable


def _transient(reply: Reply) -> bool:
    return reply.status is None or reply.status >= 500


def target_verdict(reply: Reply) -> Verdict:
    """Judge a target's reply: 2xx done; 5xx, 408, 429, no answer retry; anything else (410 too) rejected."""
    if reply.status is not None and 200 <= reply.status < 300:
        return Verdict.DONE
    if _transient(reply) or reply.status in RETRY_STATUSES:
        return Verdict.RETRY
    return Verdict.REJECTED


def policy_verdict(reply: Reply) -> Verdict:
    """Judge the policy server's reply: 2xx allowed, 4xx denied, anything else retried."""
    if reply.status is not None and 200 <= reply.status < 300:
        return Verdict.DONE
    if reply.status is not None and 400 <= reply.status < 500:
        return Verdict.DENIED
    return Verdict.RETRY


def retry_delay(
    schedule: Sequence[float], attempts_made: int, retry_after: float | None = None, rng: random.Random | None = None
) -> float | None:
    """Seconds until the next attempt, or None when the schedule is spent.

    After attempt *n* (1-based) the wait is ``schedule[n-1]`` with ±10% jitter,
    so that a target recovering from an outage is not hit by every retry at
    once; a ``Retry-After`` from the server replaces it (up to a day).
    """
    if attempts_made > len(schedule):
        return None
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    return schedule[attempts_made - 1] * (rng or random).uniform(0.9, 1.1)
