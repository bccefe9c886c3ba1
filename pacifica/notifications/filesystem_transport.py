"""The embedded default's broker: kombu's filesystem transport, adjusted.

kombu writes a message in place, under the name a reader looks for, so a
worker polling at that moment can read a half-written file and stop for good
on the broken JSON.  Here a message is written under a name no reader picks
up and then renamed (atomic), so a reader sees the whole message or nothing.
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.json import dumps


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
