"""The Firestore client the deployed functions share (one per instance)."""

from __future__ import annotations

import functools
import os

from google.cloud import firestore


def project_id() -> str | None:
    """The project from the environment the Functions runtime or emulator sets."""
    return os.environ.get("GCLOUD_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")


@functools.cache
def client() -> firestore.Client:
    """A Firestore client for this project, created on first use.

    `google.cloud.firestore.Client` rather than `firebase_admin.firestore`:
    it needs no credentials against the emulator and uses the runtime's
    default credentials in production.
    """
    return firestore.Client(project=project_id())
