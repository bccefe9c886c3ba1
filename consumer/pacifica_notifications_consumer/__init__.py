"""Run a Pacifica consumer.zip as a subscriber of pacifica-notifications, and the library its entry point imports.

A consumer's ``__main__.py`` does ``from pacifica_notifications_consumer import download, upload``;
importing this package starts nothing.
"""

from __future__ import annotations

from typing import Any

__version__ = '0.1.0'

__all__ = ['download', 'upload']


def __getattr__(name: str) -> Any:
    # The transfer functions need promise and requests; the runner's own modules do not.
    if name in __all__:
        from . import transfer

        return getattr(transfer, name)
    raise AttributeError(name)
