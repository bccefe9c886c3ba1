"""HTTP out: questions to the policy server and deliveries to targets.

One urllib3 pool manager per process (thread-safe, so the delivery threads
share it) keeps connections alive across calls.  Every call has connect
and read timeouts, never follows redirects, reads at most
``max_logged_body`` bytes of the answer, and returns a plain :class:`Reply`
instead of raising: deciding what a reply means is :mod:`verdicts`' job,
and the database is not touched here.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import urllib3
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, TimeoutError
from urllib3.util import parse_url

from . import __version__, cloudevents, signing
from .config import settings

USER_AGENT = f'pacifica-notifications/{__version__}'

#: Connections kept alive per target host.
POOL_SIZE = 64

_POOL: tuple[int, urllib3.PoolManager, dict[str, tuple[HTTPConnectionPool, str]]] | None = None
_POOL_LOCK = threading.Lock()


@dataclass(frozen=True)
class Reply:
    """What came back from one HTTP call, or why nothing did."""

    status: int | None
    body: str
    retry_after: float | None = None
    error: str | None = None

    @property
    def code(self) -> str:
        """The status as logged: the HTTP code, or the kind of failure."""
        return str(self.status) if self.status is not None else (self.error or 'error').split(':')[0]

    def describe(self, limit: int = 200) -> str:
        """A one-line account for a subscription's ``error`` field."""
        if self.status is None:
            return self.error or 'no answer'
        excerpt = ' '.join(self.body.split())[:limit]
        return f'answered {self.status}' + (f': {excerpt}' if excerpt else '')


def pool() -> urllib3.PoolManager:
    """This process's connection pools (a forked child makes its own)."""
    return _client()[0]


def _client() -> tuple[urllib3.PoolManager, dict[str, tuple[HTTPConnectionPool, str]]]:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            manager = urllib3.PoolManager(num_pools=256, maxsize=POOL_SIZE, block=False, retries=False)
            _POOL = (os.getpid(), manager, {})
        return _POOL[1], _POOL[2]


def _route(url: str) -> tuple[HTTPConnectionPool, str]:
    """The connection pool and request path of a URL (worked out once per URL and process)."""
    manager, routes = _client()
    route = routes.get(url)
    if route is None:
        if len(routes) > 65536:
            routes.clear()
        route = routes[url] = (manager.connection_from_url(url), parse_url(url).request_uri)
    return route


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def encode(payload: dict) -> bytes:
    """A JSON body as sent: UTF-8, not ASCII-escaped."""
    return json.dumps(payload, ensure_ascii=False).encode('utf-8')


def post_json(
    url: str, payload: dict | bytes, headers: dict | None = None, auth: tuple[str, str] | None = None
) -> Reply:
    """POST ``payload`` as JSON (or bytes already encoded) and return what happened, never raising."""
    config = settings()
    body = payload if isinstance(payload, bytes) else encode(payload)
    all_headers = {'Content-Type': 'application/json', 'User-Agent': USER_AGENT, **(headers or {})}
    all_headers = {name: value for name, value in all_headers.items() if value}  # '' leaves a header out
    if auth is not None:
        all_headers['Authorization'] = basic_authorization(*auth)
    try:
        connections, path = _route(url)
        resp = connections.urlopen(
            'POST',
            path,
            body=body,
            headers=all_headers,
            timeout=urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout),
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )
    except (NewConnectionError, ProtocolError, ConnectionError) as exc:  # before TimeoutError: a subclass
        return Reply(None, '', error=f'unreachable: {exc}')
    except TimeoutError as exc:
        return Reply(None, '', error=f'timeout: {exc}')
    except (HTTPError, ValueError) as exc:
        return Reply(None, '', error=f'error: {exc}')
    try:
        # Read one byte more than is kept: a longer body is cut, and its
        # connection closed rather than drained (a target cannot make us read more).
        data = resp.read(config.max_logged_body + 1)
        whole = len(data) <= config.max_logged_body
    except TimeoutError as exc:
        resp.close()
        return Reply(None, '', error=f'timeout: {exc}')
    except (HTTPError, OSError) as exc:
        resp.close()
        return Reply(None, '', error=f'unreachable: {exc}')
    if whole:
        resp.release_conn()
    else:
        resp.close()
    text = data[: config.max_logged_body].decode('utf-8', errors='replace')
    return Reply(resp.status, text, parse_retry_after(resp.headers.get('Retry-After')))


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return 'Basic ' + base64.b64encode(f'{username}:{password}'.encode()).decode('ascii')


def ask_policy(policy_url: str, user: str, event: dict | bytes) -> Reply:
    """Ask ``POST {policy_url}/events/{user}`` whether ``user`` may see ``event``."""
    return post_json(f'{policy_url.rstrip("/")}/events/{quote(user, safe="")}', event)


def event_auth_to_requests(auth: dict, headers: dict) -> tuple[str, str] | None:
    """Convert a subscription's auth to arguments: a basic pair, or a header added (the seed's name)."""
    if auth.get('type') == 'basic':
        return (auth['basic']['username'], auth['basic']['password'])
    if auth.get('type') == 'header':
        headers['Authorization'] = f'{auth["header"]["type"]} {auth["header"]["credentials"]}'
    return None


def with_extensions(event: dict, extensions: dict) -> dict:
    """The event as a subscriber receives it, with the subscription's extensions.

    A 1.0 event takes them as attributes; any other (0.1, the seed's) in its
    ``extensions`` object, merged with its own.
    """
    if not extensions:
        return event
    if cloudevents.is_v1(event):
        return cloudevents.added_to_v1(event, extensions)
    own = event.get('extensions')
    return {**event, 'extensions': {**(own if isinstance(own, dict) else {}), **extensions}}


def render(event: dict, mode: str, extensions: dict, encoded: bytes | None = None) -> tuple[dict, bytes]:
    """The headers and body that carry ``event`` to a subscription (``encoded``: the event already encoded).

    ``structured`` (the seed's way): the JSON event is the body,
    ``application/cloudevents+json`` for a 1.0 event.  ``binary``: CloudEvents
    binary mode, a 0.1 event's attributes mapped to 1.0's.
    """
    if mode == 'binary':
        headers, body = cloudevents.to_binary(with_extensions(cloudevents.as_v1(event), extensions))
        return {'Content-Type': '', **headers}, body  # no data, no media type
    if encoded is None or extensions:
        encoded = encode(with_extensions(event, extensions))
    media = 'application/cloudevents+json' if cloudevents.is_v1(event) else 'application/json'
    return {'Content-Type': media}, encoded


def deliver(
    target_url: str,
    body: bytes,
    headers: dict,
    auth: dict,
    delivery_id: str,
    secrets_in_use: list[str] | tuple[str, ...] = (),
) -> Reply:
    """POST a rendered event to a subscriber's target: its auth, a stable ``webhook-id``, signed with its secrets.

    The timestamp, and so the signature, is made afresh for every attempt.
    """
    sent = {**headers, **signing.headers(secrets_in_use, delivery_id, body)}
    basic = event_auth_to_requests(auth, sent)
    return post_json(target_url, body, sent, basic)
