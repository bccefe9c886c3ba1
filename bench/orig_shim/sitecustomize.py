"""Benchmark-only shim for pacifica-notifications 0.5.2, loaded in ITS processes only.

``bench/compare.py`` puts this folder on ``PYTHONPATH`` of the processes it starts from the
0.5.2 virtualenv (``pacifica-notifications``, ``pacifica-notifications-cmd`` and
``celery -A pacifica.notifications.tasks worker``), so the commands are the original's own and
nothing in any site-packages is edited.  0.5.2 runs unmodified on Celery 5 otherwise (its app
passes ``broker=``/``backend=`` to ``Celery()`` and uses no Celery 4 setting names); what this
changes, right after ``pacifica.notifications.tasks`` is imported:

* ``task_default_queue`` = ``$BENCH_ORIG_QUEUE``: 0.5.2 has no queue setting, so it would use
  Celery's default ``celery`` queue, shared by anything else on the broker; each benchmark
  start gets a queue of its own (API and worker alike, as both import that module);
* ``broker_connection_retry_on_startup`` = True: Celery 4's behaviour, which Celery 5 keeps
  but warns about on every worker start.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

TARGET = 'pacifica.notifications.tasks'


def _configure(module) -> None:
    app = getattr(module, 'CELERY_APP', None)
    if app is None:
        return
    queue = os.environ.get('BENCH_ORIG_QUEUE')
    if queue:
        app.conf.task_default_queue = queue
    app.conf.broker_connection_retry_on_startup = True
    sys.stderr.write(f'[bench-shim] {TARGET}: task_default_queue={app.conf.task_default_queue}\n')


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)  # find the real module with the other finders
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            _configure(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get('BENCH_ORIG_QUEUE'):
    sys.meta_path.insert(0, _Finder())
