"""Kombu transports adjusted so that a broker hiccup never stops a worker for good.

- Filesystem (the embedded default): kombu writes a message in place, under
  the name a reader looks for, so a worker polling at that moment can read a
  half-written file and stop for good on the broken JSON.  Here a message is
  written under a name no reader picks up and then renamed (atomic), so a
  reader sees the whole message or nothing.
- Redis: an acknowledgement that fails because Redis went away keeps its
  prefetch slot for ever, so after a Redis restart a worker with all its
  slots taken never asks for another message.  Here a failed acknowledgement
  still frees the slot; the message itself stays in Redis's unacked set
  (restored after the visibility timeout) and in our log (the sweep).
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES, filesystem, redis, virtual
from kombu.utils.json import dumps

#: The URL scheme of the filesystem transport.
SCHEME = 'pacifica-filesystem'
#: The URL scheme of the Redis transport (``redis://`` URLs are mapped to it).
REDIS_SCHEME = 'pacifica-redis'


class Channel(filesystem.Channel):
    """A filesystem channel whose messages appear in the queue folder complete."""

    def _put(self, queue, payload, **kwargs):
        name = f'{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg'
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f'.partial-{name}')
        try:
            with open(partial, 'wb') as handle:
                handle.write(dumps(payload).encode('utf-8'))
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f'Cannot add file {final!r} to directory') from exc


class Transport(filesystem.Transport):
    """The filesystem transport with :class:`Channel`."""

    Channel = Channel


class RedisQoS(redis.QoS):
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


class RedisChannel(redis.Channel):
    """A Redis channel with :class:`RedisQoS`."""

    QoS = RedisQoS


class RedisTransport(redis.Transport):
    """The Redis transport with :class:`RedisChannel`."""

    Channel = RedisChannel


def register() -> None:
    """Make our URL schemes name these transports (idempotent)."""
    TRANSPORT_ALIASES[SCHEME] = f'{__name__}:Transport'
    TRANSPORT_ALIASES[REDIS_SCHEME] = f'{__name__}:RedisTransport'


def redis_url(url: str) -> str:
    """Map a ``redis://`` URL to :class:`RedisTransport`; leave any other URL alone."""
    return REDIS_SCHEME + url[len('redis'):] if url.startswith('redis://') else url
