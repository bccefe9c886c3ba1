"""What every consumer test shares: the library importable from this checkout, and a clean slate around each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CONSUMER = Path(__file__).resolve().parents[1]
if str(CONSUMER) not in sys.path:
    sys.path.insert(0, str(CONSUMER))

from pacifica_notifications_consumer import jobenv, transfer  # noqa: E402


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No service URL or failure file from the caller's environment; rejections a test leaves are its own.

    Left in the library, an unhandled rejection would be printed at exit.
    """
    for name in (jobenv.FAILURES, jobenv.CART_URL, jobenv.INGEST_URL, jobenv.POLICY_URL, jobenv.CONSUMER_ID):
        monkeypatch.delenv(name, raising=False)
    yield
    with transfer._lock:
        transfer._unhandled.clear()
