"""Callables driven in-process, as the Functions runtime calls them: a Flask request with the
callable protocol's body and an emulator ID token (the deployed function objects of main.py)."""

from __future__ import annotations

import os

import flask

os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
os.environ.setdefault("GCLOUD_PROJECT", "demo-pack427")

import firebase_admin  # noqa: E402
import main  # noqa: E402, F401  (the deployed functions, for the tests that call them)

from support.idtokens import emulator_id_token  # noqa: E402, F401

app = flask.Flask(__name__)


def call(function, data, uid: str | None = "alice", body: object = None):
    """POST `{"data": data}` to `function`; returns (HTTP status, decoded body)."""
    headers = {}
    if uid is not None:
        project = firebase_admin.get_app().project_id
        headers["Authorization"] = f"Bearer {emulator_id_token(uid, project)}"
    with app.test_request_context("/", method="POST", json={"data": data} if body is None else body, headers=headers):
        response = function(flask.request)
    return response.status_code, response.get_json()
