"""Prometheus metrics: the work of every process of this host, added up, and the backlog as the log has it.

Counters and histograms use prometheus-client's multiprocess mode: each
process (the server, each uWSGI process, each worker and its children) keeps
its own files in ``metrics_dir`` and ``GET /metrics`` adds them all up, so a
delivery made by a worker counts as much as one made by the server's own.
Counting rows of the log tables at each scrape was the other way, and it
cannot work: the log is purged, a retry leaves no row of its own, a
duplicate or refused event leaves none at all, and counting millions of rows
every few seconds would load the database.  Gauges (the backlog, the
subscriptions) are read from the database at each scrape: a few indexed
counts, true whoever did the work.

prometheus-client picks multiprocess mode when it is first imported, so it
is imported here, after ``PROMETHEUS_MULTIPROC_DIR`` is set, and nowhere else.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import data_dir, settings
from .models import EventMatch, utcnow

#: Seconds from an event's receipt to its target taking it, or of one policy question.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

_LOCK = threading.Lock()
_METRICS: Metrics | None = None


def folder() -> Path:
    """Where this host's processes keep their metrics (made on first use)."""
    path = Path(settings().metrics_dir) if settings().metrics_dir else data_dir() / 'metrics'
    path.mkdir(parents=True, exist_ok=True)
    return path


class Metrics:
    """The counters and histograms every process writes to."""

    def __init__(self) -> None:
        os.environ['PROMETHEUS_MULTIPROC_DIR'] = str(folder())
        from prometheus_client import Counter, Histogram

        self.events = Counter(
            'pacifica_notifications_events_received', 'Events sent to /receive, by outcome.', ['outcome']
        )
        self.deliveries = Counter(
            'pacifica_notifications_deliveries',
            'Delivery outcomes: delivered, retried (an attempt failed, another is due), failed (for good), '
            'denied (by the policy server); disabled counts subscriptions disabled.',
            ['outcome'],
        )
        self.delivery_latency = Histogram(
            'pacifica_notifications_delivery_latency_seconds',
            'From an event being received to a target taking it.',
            buckets=LATENCY_BUCKETS,
        )
        self.policy_latency = Histogram(
            'pacifica_notifications_policy_latency_seconds',
            'How long the policy server took to answer.',
            buckets=LATENCY_BUCKETS,
        )


def metrics() -> Metrics:
    """This process's metrics."""
    global _METRICS
    with _LOCK:
        if _METRICS is None:
            _METRICS = Metrics()
        return _METRICS


def received(outcome: str, count: int = 1) -> None:
    """Count events sent to ``/receive``: ``stored``, ``duplicate`` or ``rejected``."""
    if count:
        metrics().events.labels(outcome).inc(count)


def delivery(outcome: str, count: int = 1) -> None:
    """Count delivery outcomes: ``delivered``, ``retried``, ``failed``, ``denied``, ``disabled``."""
    if count:
        metrics().deliveries.labels(outcome).inc(count)


def delivered_after(received_at: datetime) -> None:
    """Record how long an event took from receipt to its target."""
    metrics().delivery_latency.observe(max(0.0, (utcnow() - received_at).total_seconds()))


def policy_answered_in(seconds: float) -> None:
    metrics().policy_latency.observe(seconds)


class _FromTheLog:
    """Gauges read from the database at each scrape."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from . import due
        from .binding import close, connect

        try:
            connect()
            backlog = due.backlog()
            oldest = due.oldest_unfinished()
            live = EventMatch.select().where(EventMatch.live()).count()
            disabled = (
                EventMatch.select().where(EventMatch.deleted.is_null() & EventMatch.disabled.is_null(False)).count()
            )
        finally:
            close()
        work = GaugeMetricFamily(
            'pacifica_notifications_backlog',
            'Unfinished work by stage (dispatch, policy, deliveries).',
            labels=['stage'],
        )
        for stage, count in backlog.items():
            work.add_metric([stage], count)
        yield work
        yield GaugeMetricFamily(
            'pacifica_notifications_oldest_pending_seconds',
            'Age of the oldest unfinished work (0 when there is none).',
            value=oldest or 0.0,
        )
        subs = GaugeMetricFamily(
            'pacifica_notifications_subscriptions', 'Subscriptions not deleted, by state.', labels=['state']
        )
        subs.add_metric(['live'], live)
        subs.add_metric(['disabled'], disabled)
        yield subs


def exposition() -> tuple[str, bytes]:
    """The content type and text of ``GET /metrics``: every process's counters added up, and the log's gauges."""
    metrics()
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder()))
    registry.register(_FromTheLog())
    return CONTENT_TYPE_LATEST, generate_latest(registry)
