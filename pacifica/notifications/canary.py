"""Tell whether the broker still holds what was queued, by a message kept there for that.

A broker that restarts without its data (Redis with no persistence, a
RabbitMQ node reset, a new broker at the same address) loses every queued
task at once, and nothing tells the workers: they reconnect and wait.  So
each worker keeps one message in a queue nobody consumes, ``<queue>.canary``
(durable and persistent where the broker can keep it).  A worker that finds
it gone when it connects knows the broker forgot, puts a new one there, and
queues all unfinished work again from the log.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue


def canary_queue(app: Celery) -> Queue:
    """The queue that holds the canary, named after the work queue."""
    name = f'{app.conf.task_default_queue}.canary'
    return Queue(name, Exchange(''), routing_key=name, durable=True, auto_delete=False)


def broker_remembers(app: Celery) -> bool:
    """Whether the canary is still there; if not, put one there and say False."""
    queue = canary_queue(app)
    with app.connection_for_write() as conn:
        bound = queue(conn.default_channel)
        _name, count, _consumers = bound.queue_declare()
        if count:
            return True
        with conn.Producer() as producer:
            producer.publish(
                {'canary': True},
                exchange='',
                routing_key=queue.name,
                delivery_mode=2,
                serializer='json',
                declare=[queue],
            )
        return False
