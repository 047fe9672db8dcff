"""The platform's floor for send-to-inbox latency: what any engine on Cloud Functions pays.

A callable that writes one document, and a Firestore trigger on that document
that writes one inbox document: no engine code, no reads. `scripts/bench`
loads this codebase beside the engine's (on its own emulator suite only, never
deployed) and times it with the same listener as the engine's messages.
"""

from functools import cache

from firebase_admin import initialize_app
from firebase_functions import firestore_fn, https_fn
from google.cloud import firestore

initialize_app()


@cache
def db() -> firestore.Client:
    return firestore.Client()


@https_fn.on_call()
def bench_floorSend(req: https_fn.CallableRequest) -> dict:
    """Write `benchFloor/{id}` naming the recipient: the callable's one document."""
    if req.auth is None:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.UNAUTHENTICATED, "sign in")
    db().collection("benchFloor").document(req.data["id"]).set({"to": req.data["to"]})
    return {"id": req.data["id"]}


@firestore_fn.on_document_created(document="benchFloor/{id}")
def bench_floorDeliver(event: firestore_fn.Event[firestore_fn.DocumentSnapshot | None]) -> None:
    """Write the recipient's inbox document: the trigger's one document."""
    if event.data is not None:
        db().document(f"users/{event.data.get('to')}/inbox/{event.params['id']}").set({"floor": True})
