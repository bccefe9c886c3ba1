"""Our Redis transport: kombu's, adjusted so that a Redis restart never stops a worker for good.

An acknowledgement that fails because Redis went away keeps its prefetch slot
for ever in kombu, so after a Redis restart a worker with all its slots taken
never asks for another message.  Here a failed acknowledgement still frees
the slot; the message itself stays in Redis's unacked set (restored after the
visibility timeout) and in our log (the sweep).

Imported by kombu only when a ``redis://`` broker is configured: it needs the
``redis`` package (``pip install 'pacifica-notifications[redis]'``).
"""
from __future__ import annotations

from kombu.transport import redis, virtual


class QoS(redis.QoS):
    """Redis prefetch accounting that frees a slot even when Redis is not there to hear the ack."""

    def ack(self, delivery_tag):
        try:
            super().ack(delivery_tag)
        except Exception:
            virtual.QoS.ack(self, delivery_tag)
            raise

    def reject(self, delivery_tag, requeue=False):
        try:
            super().reject(delivery_tag, requeue)
        except Exception:
            virtual.QoS.ack(self, delivery_tag)
            raise


class Channel(redis.Channel):
    """A Redis channel with :class:`QoS`."""

    QoS = QoS


class Transport(redis.Transport):
    """The Redis transport with :class:`Channel`."""

    Channel = Channel
