"""The consumer's subscription at pacifica-notifications: made at start, re-made if it was lost, deleted at stop.

The subscription's uuid is kept in the work folder, so a runner started again
on the same work folder takes up its own subscription: it re-enables it if
the service disabled it (a target that failed), makes a new one if it was
deleted, and points it at the current jsonpath and public URL.  A clean stop
deletes the subscription and forgets it; finding it still there at start means
the last run ended without stopping (killed, or its host went down), and what
the service could not deliver since that run began is asked for again
(:meth:`Producer.replay`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from .package import ConsumerError

#: Seconds to wait for the service.
TIMEOUT = 30


class Producer:
    """The service's ``/eventmatch`` API, as one user."""

    def __init__(self, url: str, user: str, auth: str | None = None):
        self.url = url.rstrip('/')
        self.headers = {'Http-Remote-User': user}
        if auth:
            self.headers['Authorization'] = auth

    def _call(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        try:
            return requests.request(method, self.url + path, json=body, headers=self.headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise ConsumerError(f'the producer at {self.url} cannot be reached: {exc}') from None

    def _answer(self, resp: requests.Response, doing: str) -> dict[str, Any]:
        if resp.status_code != 200:
            raise ConsumerError(f'the producer refused to {doing}: {_why(resp)}')
        return resp.json()

    def subscribe(self, state_file: Path, name: str, jsonpath: str, target_url: str) -> tuple[dict[str, Any], str]:
        """This consumer's subscription, live and current: the one in ``state_file`` if it exists, else a new one.

        Also returns when the last run began if it ended without stopping (else
        an empty string): the start of what may have been missed.
        """
        fields = {'name': name, 'jsonpath': jsonpath, 'target_url': target_url}
        known = json.loads(state_file.read_text()) if state_file.exists() else {}
        sub = None
        if known.get('subscription'):
            resp = self._call('GET', f'/eventmatch/{known["subscription"]}')
            if resp.status_code == 200:
                again = self._call(
                    'PUT', f'/eventmatch/{known["subscription"]}', {**fields, 'disabled': None, 'error': None}
                )
                sub = self._answer(again, 'update the subscription')
        if sub is None:
            sub = self._answer(self._call('POST', '/eventmatch', fields), 'create the subscription')
        # The service's own time of the change (so no clock skew): from then on this run was subscribed.
        state_file.write_text(json.dumps({'subscription': sub['uuid'], 'since': sub['updated']}))
        return sub, known.get('since', '')

    def replay(self, sub_uuid: str, since: str) -> str:
        """Ask the service to send again what this subscription has not received since ``since``; say what came of it.

        Not a reason to stop: work still under way (409) will be delivered anyway,
        and a span the service will not replay (400) is said as it is.
        """
        resp = self._call('POST', f'/eventmatch/{sub_uuid}/replay', {'since': since})
        if resp.status_code == 200:
            return f'asked again for what was missed since {since}: {resp.json()["queued"]} event(s)'
        return f'could not ask again for what was missed since {since}: {_why(resp)}'

    def secret(self, sub_uuid: str) -> str:
        """The subscription's signing secret, to check each delivery with."""
        return self._answer(self._call('GET', f'/eventmatch/{sub_uuid}/secret'), 'show the signing secret')['key']

    def unsubscribe(self, state_file: Path, sub_uuid: str) -> None:
        """Delete the subscription (a missing one is gone already)."""
        resp = self._call('DELETE', f'/eventmatch/{sub_uuid}')
        if resp.status_code not in (200, 403):
            self._answer(resp, 'delete the subscription')
        state_file.unlink(missing_ok=True)


def _why(resp: requests.Response) -> str:
    """A refusal in one line: the status and the service's message."""
    try:
        why = resp.json().get('message', resp.text)
    except ValueError:
        why = resp.text
    return f'{resp.status_code} {why}'.strip()
