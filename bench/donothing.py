"""The intake baseline: a do-nothing CherryPy app answering every POST ``200 {"status": "ok"}``.

    python bench/donothing.py --port N

CherryPy's default thread pool and settings, except: 127.0.0.1, no autoreload, and access lines
on the screen as ``pacifica-notifications`` writes them (``log.screen``).  It stops on SIGTERM,
and by itself when the process that started it is gone.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import cherrypy


class Root:
    exposed = True

    @cherrypy.tools.json_out()
    def POST(self, *_args, **_kwargs):
        cherrypy.request.body.read()
        return {'status': 'ok'}

    def GET(self, *_args, **_kwargs):
        return 'ok'


def watchdog(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    cherrypy.engine.exit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--port', type=int, required=True)
    args = parser.parse_args()
    cherrypy.config.update(
        {
            'server.socket_host': '127.0.0.1',
            'server.socket_port': args.port,
            'engine.autoreload.on': False,
            'log.screen': True,
        }
    )
    cherrypy.tree.mount(Root(), '/', {'/': {'request.dispatch': cherrypy.dispatch.MethodDispatcher()}})
    threading.Thread(target=watchdog, args=(os.getppid(),), daemon=True).start()
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    cherrypy.engine.block()


if __name__ == '__main__':
    main()
