"""The embedded broker's doorbell: a write wakes a waiting consumer; no reader, no harm."""

from __future__ import annotations

import os
import select
import threading

import pytest

from pacifica.notifications.filesystem_transport import Doorbell

pytestmark = [pytest.mark.fast, pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='no named pipes here')]


def test_ringing_with_no_consumer_is_harmless(tmp_path):
    bell = Doorbell.of(tmp_path / 'doorbell')
    assert bell is not None
    bell.ring()  # no reader: nothing to wake, nothing raised
    bell.ring()


def test_a_ring_wakes_a_waiting_consumer_and_is_cleared(tmp_path):
    path = tmp_path / 'doorbell'
    consumer = Doorbell(path)
    Doorbell.of(path)  # makes the pipe
    woke = threading.Event()

    def wait() -> None:
        consumer.wait(600)  # far longer than the test may take: only the ring returns it
        woke.set()

    consumer.wait(0)  # opens the reading end, so a ring has somewhere to go
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    Doorbell(path).ring()  # another writer, as another process would be
    assert woke.wait(120), 'the ring did not wake the consumer'
    assert consumer._reader is not None
    readable, _, _ = select.select([consumer._reader], [], [], 0)
    assert not readable, 'the rings were not cleared'
