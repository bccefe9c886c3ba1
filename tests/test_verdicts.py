"""What replies mean, and when to try again: pure decisions."""

from __future__ import annotations

import random

import pytest

from pacifica.notifications.delivery import Reply
from pacifica.notifications.verdicts import Verdict, policy_verdict, retry_delay, target_verdict

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    'status, verdict',
    [
        (200, Verdict.DONE),
        (201, Verdict.DONE),
        (204, Verdict.DONE),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (None, Verdict.RETRY),
        (410, Verdict.REJECTED),
        (400, Verdict.REJECTED),
        (401, Verdict.REJECTED),
        (404, Verdict.REJECTED),
        (301, Verdict.REJECTED),
    ],
)
def test_target_verdict(status, verdict):
    assert target_verdict(Reply(status, '')) is verdict


@pytest.mark.parametrize(
    'status, verdict',
    [
        (200, Verdict.DONE),
        (201, Verdict.DONE),
        (412, Verdict.DENIED),
        (403, Verdict.DENIED),
        (404, Verdict.DENIED),
        (500, Verdict.RETRY),
        (None, Verdict.RETRY),
        (302, Verdict.RETRY),
    ],
)
def test_policy_verdict(status, verdict):
    assert policy_verdict(Reply(status, '')) is verdict


def test_retry_delay_follows_the_schedule_with_jitter():
    rng = random.Random(7)
    schedule = [5, 30, 120]
    delays = [retry_delay(schedule, n, rng=rng) for n in (1, 2, 3)]
    for delay, base in zip(delays, schedule):
        assert base * 0.9 <= delay <= base * 1.1
    assert retry_delay(schedule, 4) is None


def test_retry_after_replaces_the_schedule_up_to_a_day():
    assert retry_delay([5], 1, retry_after=42) == 42
    assert retry_delay([5], 1, retry_after=10**7) == 86400
    assert retry_delay([5], 2, retry_after=42) is None


def test_empty_schedule_never_retries():
    assert retry_delay([], 1) is None
