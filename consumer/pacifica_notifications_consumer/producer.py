"""The consumer's subscription at pacifica-notifications: made at start, re-made if it was lost, deleted at stop.

The subscription's uuid is kept in the work folder, so a runner started again
on the same work folder takes up its own subscription: it re-enables it if
the service disabled it (a target that failed), makes a new one if it was
deleted, and points it at the current jsonpath and public URL.
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
            try:
                why = resp.json().get('message', resp.text)
            except ValueError:
                why = resp.text
            raise ConsumerError(f'the producer refused to {doing}: {resp.status_code} {why}'.strip())
        return resp.json()

    def subscribe(self, state_file: Path, name: str, jsonpath: str, target_url: str) -> dict[str, Any]:
        """This consumer's subscription, live and current: the one in ``state_file`` if it exists, else a new one."""
        fields = {'name': name, 'jsonpath': jsonpath, 'target_url': target_url}
        known = json.loads(state_file.read_text()) if state_file.exists() else {}
        if known.get('subscription'):
            resp = self._call('GET', f'/eventmatch/{known["subscription"]}')
            if resp.status_code == 200:
                again = self._call(
                    'PUT', f'/eventmatch/{known["subscription"]}', {**fields, 'disabled': None, 'error': None}
                )
                return self._answer(again, 'update the subscription')
        sub = self._answer(self._call('POST', '/eventmatch', fields), 'create the subscription')
        state_file.write_text(json.dumps({'subscription': sub['uuid']}))
        return sub

    def secret(self, sub_uuid: str) -> str:
        """The subscription's signing secret, to check each delivery with."""
        return self._answer(self._call('GET', f'/eventmatch/{sub_uuid}/secret'), 'show the signing secret')['key']

    def unsubscribe(self, state_file: Path, sub_uuid: str) -> None:
        """Delete the subscription (a missing one is gone already)."""
        resp = self._call('DELETE', f'/eventmatch/{sub_uuid}')
        if resp.status_code not in (200, 403):
            self._answer(resp, 'delete the subscription')
        state_file.unlink(missing_ok=True)
