"""Benchmark: how long matching one event against K subscriptions takes.

Prints one JSON line.  Usage: python bench/matching.py [--subs 1000] [--events 200]
Runs on a throwaway SQLite file; nothing else is needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from pacifica.notifications import jsonpath, orm
from pacifica.notifications.matcher import Matcher

FIXTURE = Path(__file__).resolve().parent.parent / 'tests' / 'fixtures' / 'events.json'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--subs', type=int, default=1000)
    parser.add_argument('--events', type=int, default=200)
    args = parser.parse_args()
    event = json.loads(FIXTURE.read_text(encoding='utf-8'))
    with tempfile.TemporaryDirectory() as folder:
        orm.bind_database(f'sqlite:///{folder}/bench.sqlite3')
        orm.BaseModel.database_connect()
        orm.OrmSync.update_tables()
        with orm.BaseModel.atomic():
            for index in range(args.subs):
                matching = index % 10 == 0
                path = (
                    f'$.data[*][?(@.destinationTable = "Files" and @.size > {index % 97})]'
                    if matching
                    else f'$.data[*][?(@.destinationTable = "Nope{index}")]'
                )
                orm.EventMatch.create(
                    name=f's{index}', jsonpath=path, user=f'u{index % 50}', target_url='http://127.0.0.1:9/'
                )
        matcher, now = Matcher(), orm.utcnow()
        started = time.perf_counter()
        matcher.match({}, now)
        load_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        matcher.match(event, now)
        first_ms = (time.perf_counter() - started) * 1000
        timings = []
        for _ in range(args.events):
            started = time.perf_counter()
            matched = matcher.match(event, now)
            timings.append((time.perf_counter() - started) * 1000)
        orm.BaseModel.database_close()
    print(
        json.dumps(
            {
                'subscriptions': args.subs,
                'matched': len(matched),
                'load_subscriptions_ms': round(load_ms, 2),
                'first_event_ms_with_parsing': round(first_ms, 2),
                'match_ms_p50': round(statistics.median(timings), 2),
                'match_ms_max': round(max(timings), 2),
                'parsed_cache': jsonpath.parse.cache_info()._asdict(),
            }
        )
    )


if __name__ == '__main__':
    main()
