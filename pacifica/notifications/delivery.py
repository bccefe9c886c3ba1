"""HTTP out: questions to the policy server and deliveries to targets.

One pooled ``requests`` session per process keeps connections alive across
deliveries.  Every call has connect and read timeouts, never follows
redirects, reads at most ``max_logged_body`` bytes of the answer, and
returns a plain :class:`Reply` instead of raising: deciding what a reply
means is :mod:`verdicts`' job, and the database is not touched here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .config import settings

USER_AGENT = f'pacifica-notifications/{__version__}'

_SESSION: tuple[int, requests.Session] | None = None


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


def session() -> requests.Session:
    """This process's pooled session (a forked child makes its own)."""
    global _SESSION
    if _SESSION is None or _SESSION[0] != os.getpid():
        new = requests.Session()
        adapter = HTTPAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
        new.mount('http://', adapter)
        new.mount('https://', adapter)
        new.headers['User-Agent'] = USER_AGENT
        _SESSION = (os.getpid(), new)
    return _SESSION[1]


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


def _read_bounded(resp: requests.Response, limit: int) -> str:
    """At most ``limit`` bytes of the body: a target cannot make us read more."""
    data = b''
    for chunk in resp.iter_content(8192):
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit].decode(resp.encoding or 'utf-8', errors='replace')


def post_json(url: str, payload: dict, headers: dict | None = None, auth: tuple[str, str] | None = None) -> Reply:
    """POST ``payload`` as JSON and return what happened, never raising for network trouble."""
    config = settings()
    timeout, limit = (config.connect_timeout, config.read_timeout), config.max_logged_body
    body = json.dumps(payload, ensure_ascii=False).encode('utf-8')
    all_headers = {'Content-Type': 'application/json', **(headers or {})}
    try:
        with session().post(
            url, data=body, headers=all_headers, auth=auth, timeout=timeout, allow_redirects=False, stream=True
        ) as resp:
            return Reply(
                resp.status_code, _read_bounded(resp, limit), parse_retry_after(resp.headers.get('Retry-After'))
            )
    except requests.Timeout as exc:
        return Reply(None, '', error=f'timeout: {exc}')
    except requests.ConnectionError as exc:
        return Reply(None, '', error=f'unreachable: {exc}')
    except requests.RequestException as exc:
        return Reply(None, '', error=f'error: {exc}')


def ask_policy(policy_url: str, user: str, event: dict) -> Reply:
    """Ask ``POST {policy_url}/events/{user}`` whether ``user`` may see ``event``."""
    return post_json(f'{policy_url.rstrip("/")}/events/{quote(user, safe="")}', event)


def event_auth_to_requests(auth: dict, headers: dict) -> tuple[str, str] | None:
    """Convert a subscription's auth to requests arguments: a basic pair, or a header added."""
    if auth.get('type') == 'basic':
        return (auth['basic']['username'], auth['basic']['password'])
    if auth.get('type') == 'header':
        headers['Authorization'] = f'{auth["header"]["type"]} {auth["header"]["credentials"]}'
    return None


def with_extensions(event: dict, extensions: dict) -> dict:
    """The event as a subscriber receives it: its extensions merged with the subscription's."""
    if not extensions:
        return event
    own = event.get('extensions')
    return {**event, 'extensions': {**(own if isinstance(own, dict) else {}), **extensions}}


def deliver(target_url: str, event: dict, auth: dict, delivery_id: str) -> Reply:
    """POST the event to a subscriber's target with its auth and a stable ``webhook-id``."""
    headers = {'webhook-id': delivery_id}
    basic = event_auth_to_requests(auth, headers)
    return post_json(target_url, event, headers, basic)
