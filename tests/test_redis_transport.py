"""Our Redis transport against a real Redis (runs where ``TEST_BROKER_URL`` is a ``redis://`` URL)."""

from __future__ import annotations

import os

import kombu
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

URL = os.environ.get('TEST_BROKER_URL', '')

pytestmark = pytest.mark.skipif(not URL.startswith('redis://'), reason='needs TEST_BROKER_URL=redis://...')


def test_a_late_acknowledgement_on_a_closed_channel_is_a_connection_error():
    """After a lost connection the worker acknowledges on the old channel: that must not stop it."""
    with kombu.Connection(URL, transport='pacifica.notifications.redis_transport:Transport') as connection:
        channel = connection.channel()
        channel.close()
        with pytest.raises(RedisConnectionError):
            channel.qos.ack('no-such-tag')
