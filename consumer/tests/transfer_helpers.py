"""Helpers for the tests of download() and upload(), with stand-ins or with the real services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The consumer distribution's folder (what an entry point's PYTHONPATH names to import the library).
CONSUMER = Path(__file__).resolve().parents[1]
#: A real event captured from pacifica-metadata (the same file as ../shared/fixtures/).
FIXTURE = CONSUMER.parent / 'tests' / 'fixtures' / 'metadata-ingest-event.json'
#: The original design's example entry point, verbatim (it must run unchanged): the repository's copy.
EXAMPLE_MAIN = (CONSUMER.parent / 'tests' / 'fixtures' / 'seed_consumer' / '__main__.py').read_text(encoding='utf-8')


def settle(promise: Any) -> Any:
    """The promise's value, or the exception it was rejected with (received here, so not reported at exit)."""
    try:
        return promise.get()
    except Exception as exc:  # noqa: BLE001 - any rejection is the result under test
        return exc


def write_src(folder: Path, event: dict[str, Any]) -> Path:
    """A job's SRC folder holding ``event`` as ``notification.json``."""
    src = folder / 'src'
    src.mkdir(parents=True)
    (src / 'notification.json').write_text(json.dumps(event), encoding='utf-8')
    return src
