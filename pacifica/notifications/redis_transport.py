"""Our Redis transport: kombu's, adjusted so that neither a Redis restart nor a dead worker stalls work.

- A dead worker's messages come back within seconds.  kombu keeps every
  message a worker holds (running, prefetched, or waiting for its ETA) in
  Redis until it is acknowledged, and gives it to another worker only after
  the visibility timeout, which must outlast the longest scheduled retry
  (hours).  Here each consumer also records which messages it holds, under
  an owner id it refreshes every few seconds; any consumer that finds an
  owner silent for :attr:`QoS.owner_ttl` seconds puts that owner's messages
  back in their queues, marked redelivered.
- A failed acknowledgement frees its prefetch slot.  kombu keeps the slot
  for ever when Redis went away, so after a Redis restart a worker with all
  its slots taken never asks for another message.  The message itself stays
  in Redis's unacked set (and in our log, for the sweep).
- One client object per channel for publishing and acknowledging.  kombu
  builds a new ``redis.Redis`` for each (over the same connection pool), and
  building one costs more than the command it sends.

Imported by kombu only when a ``redis://`` broker is configured: it needs the
``redis`` package (``pip install 'pacifica-notifications[redis]'``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from time import time

from kombu.transport import redis, virtual
from kombu.utils.json import dumps
from redis.exceptions import ConnectionError as RedisConnectionError

LOG = logging.getLogger(__name__)


class QoS(redis.QoS):
    """Redis ack emulation that knows which live consumer holds each message."""

    #: Seconds an owner may stay silent before its messages are given to others.
    owner_ttl = 20.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = uuid.uuid4().hex

    @property
    def owners_key(self) -> str:
        """Sorted set: owner id -> when it was last heard of."""
        return f'{self.unacked_key}.owners'

    def held_key(self, owner: str) -> str:
        """Set: the delivery tags an owner holds."""
        return f'{self.unacked_key}.held.{owner}'

    def append(self, message, delivery_tag):
        delivery = message.delivery_info
        record = dumps([message._raw, delivery['exchange'], delivery['routing_key']])
        now = time()
        with self.pipe_or_acquire() as pipe:
            (
                pipe.zadd(self.unacked_index_key, {delivery_tag: now})
                .hset(self.unacked_key, delivery_tag, record)
                .sadd(self.held_key(self.owner), delivery_tag)
                .zadd(self.owners_key, {self.owner: now})
                .execute()
            )
        virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag, pipe=None):
        return super()._remove_from_indices(delivery_tag, pipe).srem(self.held_key(self.owner), delivery_tag)

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

    def restore_unacked(self, client=None):
        """Put back what we hold as the channel closes; if Redis is gone, leave it to the others.

        kombu raises from here when the connection is already lost (even an
        ``AttributeError``, which kills the worker); our held set stays in
        Redis and another consumer gives it back once we fall silent.
        """
        try:
            super().restore_unacked(client)
        except Exception as exc:  # noqa: BLE001 - whatever the lost connection raised
            LOG.warning(
                'could not give back %d held message(s) at close (%r); they return after %.0f s',
                len(self._delivered),
                exc,
                self.owner_ttl,
            )
            self._delivered.clear()

    def restore_visible(self, start=0, num=10, interval=10):
        """kombu's periodic restore (every few seconds on a consuming channel), plus ours."""
        self.restore_dead_owners()
        super().restore_visible(start, num, interval)

    def restore_dead_owners(self) -> int:
        """Say we are alive, and put back the messages of owners silent too long; return how many."""
        restored = 0
        with self.channel.conn_or_acquire() as client:
            now = time()
            client.zadd(self.owners_key, {self.owner: now})
            for silent in client.zrangebyscore(self.owners_key, '-inf', now - self.owner_ttl):
                owner = silent.decode() if isinstance(silent, bytes) else silent
                held = self.held_key(owner)
                for tag in client.smembers(held):
                    self.restore_by_tag(tag.decode() if isinstance(tag, bytes) else tag, client)
                    restored += 1
                client.delete(held)
                client.zrem(self.owners_key, owner)
        if restored:
            LOG.warning('gave back %d message(s) held by consumers silent for %.0f s', restored, self.owner_ttl)
        return restored


class Channel(redis.Channel):
    """A Redis channel with :class:`QoS`, reusing one client for its commands."""

    QoS = QoS

    _commands: tuple[object, object] | None = None

    @contextmanager
    def conn_or_acquire(self, client: object = None) -> Iterator:
        yield client or self._commands_client()

    def _commands_client(self):
        """A client over the channel's current pool (safe across threads: each command takes a connection).

        A channel closed when its connection was lost has no pool; a command
        on it (a late acknowledgement) raises a connection error, which the
        worker handles by reconnecting, not an ``AttributeError``, which
        would stop it.  The message stays held, and comes back.
        """
        if self.connection is None:
            raise RedisConnectionError('the channel closed when its connection to Redis was lost')
        pool = self.pool
        if self._commands is None or self._commands[0] is not pool:
            self._commands = (pool, self._create_client())
        return self._commands[1]


class Transport(redis.Transport):
    """The Redis transport with :class:`Channel`."""

    Channel = Channel
