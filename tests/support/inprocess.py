"""The Python client (client/) against the engine in-process: its HTTP transport hands each
request to the deployed function objects (support.callables), deliveries are the processor's."""

from __future__ import annotations

import flask

from pack427.delivering.notifier import EmulatorNotifier
from pack427.workers import processor
from pack427_client import CallableClient, LocalStore, OfflineAwareChat, RetryPolicy
from support.callables import app, emulator_id_token, firebase_admin, main

URL = "http://in-process"



class InProcessTransport:
    """Hands the request to main's function of that name, as the Functions runtime would."""

    def __init__(self):
        self.calls: list[str] = []

    def post(self, url, body, headers, timeout_s):
        name = url.rsplit("/", 1)[1]
        self.calls.append(name)
        with app.test_request_context("/", method="POST", json=body, headers=headers):
            response = getattr(main, name)(flask.request)
        return response.status_code, response.get_json()


class Tokens:
    """Emulator ID tokens; `stale` first hands out one the server refuses."""

    def __init__(self, uid: str, *, stale: bool = False):
        self.uid, self.stale, self.refreshed = uid, stale, 0

    def token(self, *, force_refresh: bool = False) -> str:
        if force_refresh:
            self.refreshed += 1
            self.stale = False
        return "not-a-token" if self.stale else emulator_id_token(self.uid, firebase_admin.get_app().project_id)


NO_WAIT = RetryPolicy(base_delay_s=0, max_delay_s=0)


def client_for(uid: str, transport=None, tokens=None) -> CallableClient:
    return CallableClient(URL, tokens or Tokens(uid), transport=transport or InProcessTransport())


def chat_for(uid: str, store: LocalStore, transport=None, **options) -> OfflineAwareChat:
    return OfflineAwareChat(client_for(uid, transport), store, user_id=uid, device_id=f"{uid}-device",
                            retry=NO_WAIT, **options)


def deliver(db) -> None:
    processor.drain(db, EmulatorNotifier(), actor="test", time_budget_s=120)
