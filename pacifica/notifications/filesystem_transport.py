"""The embedded default's broker: kombu's filesystem transport, adjusted to lose nothing.

- A message appears in the queue folder whole.  kombu writes it in place,
  under the name a reader looks for, so a worker polling at that moment could
  read half a file and stop for good on the broken JSON.  Here it is written
  under a name no reader picks up and then renamed (atomic).
- A message is held, not deleted, until it is acknowledged.  kombu deletes
  it as it reads it, so a worker killed while running it (or while holding
  it for its ETA) lost it for good.  Here reading moves it (atomic rename)
  into a folder of the reading process, acknowledging deletes it, and any
  process that finds another's folder abandoned (its process gone, or
  silent for :data:`OWNER_TTL` seconds) moves those messages back into the
  queue, marked redelivered.
- A waiting consumer wakes as soon as a message is written, not at its next
  poll: each write rings a doorbell (a named pipe beside the queue folder)
  that consumers wait on between polls.  Polling stays, as the fallback, at
  a pace an idle service hardly notices.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu.transport import filesystem, virtual
from kombu.utils.json import dumps, loads

LOG = logging.getLogger(__name__)

#: Seconds a holder's folder may go untouched before its messages are given to others.
OWNER_TTL = 20.0
#: Seconds between two touches of our own folder, and two looks at the others'.
BEAT_EVERY = 2.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Doorbell:
    """A named pipe that writers ring and consumers wait on (one per process and folder)."""

    _current: dict[tuple[int, str], Doorbell] = {}
    _lock = threading.Lock()

    def __init__(self, path: Path):
        self.path = path
        self._writer: int | None = None
        self._reader: int | None = None
        self._keep_open: int | None = None

    @classmethod
    def of(cls, path: Path) -> Doorbell | None:
        """This process's doorbell at ``path``; None where named pipes do not exist."""
        if not hasattr(os, 'mkfifo'):
            return None
        key = (os.getpid(), str(path))
        with cls._lock:
            bell = cls._current.get(key)
            if bell is None:
                try:
                    os.mkfifo(path)
                except FileExistsError:
                    pass
                bell = cls._current[key] = Doorbell(path)
            return bell

    def ring(self) -> None:
        """Wake a waiting consumer, if there is one; never blocks, never fails."""
        try:
            if self._writer is None:
                self._writer = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            os.write(self._writer, b'.')
        except BlockingIOError:
            pass  # the pipe is full: it has rung plenty
        except OSError as exc:  # no reader yet (ENXIO), or it went away (EPIPE)
            if self._writer is not None:
                os.close(self._writer)
                self._writer = None
            if exc.errno not in (errno.ENXIO, errno.EPIPE, errno.ENOENT):
                LOG.debug('doorbell %s: %s', self.path, exc)

    def wait(self, timeout: float) -> None:
        """Return when rung (clearing the rings) or after ``timeout`` seconds."""
        if self._reader is None:
            self._reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            # Our own writer keeps the pipe open, so no writer is not "readable" (end of file).
            self._keep_open = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        readable, _, _ = select.select([self._reader], [], [], timeout)
        if readable:
            try:
                while os.read(self._reader, 4096):
                    pass
            except BlockingIOError:
                pass


class Holder:
    """This process's folder of held messages (one per process: a forked child makes its own).

    A daemon thread touches the folder every :data:`BEAT_EVERY` seconds (so
    a process busy with long tasks still counts as alive) and gives back what
    abandoned holders held.
    """

    _current: Holder | None = None
    _lock = threading.Lock()

    def __init__(self, queue_folder: Path):
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.queue_folder = queue_folder
        self.root = queue_folder.parent / 'held'
        self.folder = self.root / f'{self.host}~{self.pid}~{uuid.uuid4().hex[:8]}'
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths: dict[str, Path] = {}

    @classmethod
    def of(cls, queue_folder: Path) -> Holder:
        """The holder of this process (made on first use, and again after a fork)."""
        with cls._lock:
            current = cls._current
            if current is None or current.pid != os.getpid() or current.queue_folder != queue_folder:
                current = cls._current = cls(queue_folder)
                threading.Thread(target=current._beat, name='broker-holder', daemon=True).start()
            return current

    def hold(self, source: Path) -> dict | None:
        """Move a queued message into our folder and return it; None if another reader took it."""
        held = self.folder / source.name
        try:
            os.rename(source, held)
        except OSError:
            return None
        payload = loads(held.read_bytes())
        self.paths[payload['properties']['delivery_tag']] = held
        return payload

    def release(self, delivery_tag: str) -> None:
        """Forget a message that was acknowledged or put back in its queue."""
        path = self.paths.pop(delivery_tag, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _beat(self) -> None:
        while Holder._current is self:
            try:
                os.utime(self.folder)
                for folder in self.root.iterdir():
                    if folder != self.folder and self._abandoned(folder):
                        count = requeue_folder(folder, self.queue_folder)
                        if count:
                            LOG.warning('gave back %d message(s) held by %s, which is gone', count, folder.name)
            except OSError:
                pass  # a folder went away under us: look again next time
            time.sleep(BEAT_EVERY)

    def _abandoned(self, folder: Path) -> bool:
        host, _, rest = folder.name.partition('~')
        pid = rest.partition('~')[0]
        if host == self.host and pid.isdigit() and not _pid_alive(int(pid)):
            return True
        return time.time() - folder.stat().st_mtime > OWNER_TTL


def requeue_folder(folder: Path, queue_folder: Path) -> int:
    """Put every message of an abandoned holder's folder back in the queue, marked redelivered."""
    count = 0
    for held in sorted(folder.glob('*.msg')):
        try:
            payload = loads(held.read_bytes())
        except (OSError, ValueError):
            continue
        payload['properties'].setdefault('delivery_info', {})['redelivered'] = True
        _write_whole(queue_folder / held.name, dumps(payload).encode('utf-8'))
        held.unlink(missing_ok=True)
        count += 1
    try:
        folder.rmdir()
    except OSError:
        pass
    return count


def _write_whole(final: Path, data: bytes) -> None:
    """Write a file under a name no reader picks up, then rename it into place."""
    partial = final.with_name(f'.partial-{final.name}')
    partial.write_bytes(data)
    os.replace(partial, final)


class QoS(virtual.QoS):
    """Acknowledging a message deletes its held copy."""

    def ack(self, delivery_tag):
        self.channel.holder.release(delivery_tag)
        super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        super().reject(delivery_tag, requeue)
        self.channel.holder.release(delivery_tag)


class Channel(filesystem.Channel):
    """A filesystem channel that writes messages whole and holds what it reads until acknowledged."""

    QoS = QoS

    @property
    def holder(self) -> Holder:
        return Holder.of(Path(self.data_folder_in))

    @property
    def doorbell(self) -> Doorbell | None:
        return Doorbell.of(Path(self.data_folder_in).parent / 'doorbell')

    def _put(self, queue, payload, **kwargs):  # type: ignore[override]  # as kombu.filesystem does
        name = f'{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg'
        try:
            _write_whole(Path(self.data_folder_out) / name, dumps(payload).encode('utf-8'))
        except OSError as exc:
            raise filesystem.ChannelError(f'Cannot add file {name!r} to directory') from exc
        bell = self.doorbell
        if bell is not None:
            bell.ring()

    def _get(self, queue, timeout=None):
        folder = Path(self.data_folder_in)
        holder = self.holder
        wanted = f'{queue}.msg'
        for name in sorted(os.listdir(folder)):
            if name.partition('.')[2] == wanted:
                payload = holder.hold(folder / name)
                if payload is not None:
                    return payload
        raise Empty()

    def _restore(self, message):
        super()._restore(message)
        self.holder.release(message.delivery_tag)


class Transport(filesystem.Transport):
    """The filesystem transport with :class:`Channel`, waiting on the doorbell between polls."""

    Channel = Channel

    def drain_events(self, connection, timeout=None):  # type: ignore[override]  # as kombu.virtual does
        """As kombu's, but between two polls wait for the doorbell instead of sleeping."""
        started = monotonic()
        bell = self.channels[0].doorbell if self.channels else None
        cycle = self.cycle
        assert cycle is not None  # made with the transport's first channel
        while True:
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                left = None if timeout is None else timeout - (monotonic() - started)
                if left is not None and left <= 0:
                    raise socket.timeout() from None
                pause = self.polling_interval or 0.0
                if left is not None:
                    pause = min(pause, left)
                if bell is not None:
                    bell.wait(pause)
                else:
                    time.sleep(pause)
