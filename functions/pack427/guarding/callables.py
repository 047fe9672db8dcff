"""The adapter between callable functions and the service.

One path for every callable: require auth (and a uid that can key the
caller's documents, see policy), validate `data` into the request model, call
the service, return its result as JSON, and turn service errors into
`HttpsError`s that name the problem. Bad input never becomes INTERNAL, and
neither does a transient Firestore error (unavailable, deadline exceeded,
internal, quota, aborted): the caller gets UNAVAILABLE (ABORTED for an aborted
one), which the callable protocol's clients retry; every callable is safe to
repeat with the same arguments (a send by its clientMessageId).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from firebase_functions import https_fn
from google.api_core import exceptions as gexc
from google.cloud.firestore import Client
from pydantic import BaseModel, ValidationError

from .. import db
from ..errors import Aborted, EngineError, InvalidArgument, Unauthenticated, Unavailable
from ..models import NoArgumentsRequest
from . import policy

R = TypeVar("R", bound=BaseModel)

Service = Callable[[Client, str, R], BaseModel]


def handle(req: https_fn.CallableRequest, request_model: type[R], service: Service) -> dict[str, Any]:
    """Run `service(db, uid, request)` for an authenticated callable request.

    Args:
        req: the callable request as the Functions SDK gives it.
        request_model: the pydantic model `req.data` must match.
        service: the service function; it raises EngineError for the caller's
            mistakes and for policy.
    """
    try:
        uid = caller(req)
        return serve(db.client(), uid, request_model, req.data, service)
    except EngineError as err:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode(err.code), err.message, err.details) from None


TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.ResourceExhausted,
             gexc.RetryError)
"""What Firestore raises when a call may succeed if repeated (its documented retryable errors); a
commit whose answer was lost may have applied, which a repeat of the callable finds (idempotent)."""


def serve(db_client: Client, uid: str, request_model: type[R], data: Any, service: Service) -> dict[str, Any]:
    """Validate `data` as `request_model`, run `service(db_client, uid, request)`, return its result as JSON.

    Args:
        db_client: the Firestore client the service uses.
        uid: the authenticated caller.
        request_model: the pydantic model `data` must match.
        data: the request's data as the client sent it.
        service: the service function.

    Raises:
        EngineError: the service's own, InvalidArgument for bad data, Unavailable for a transient
            Firestore error (TRANSIENT) and Aborted for an aborted Firestore call: the caller may repeat.
    """
    request = parse(request_model, data)
    try:
        return service(db_client, uid, request).model_dump(mode="json")
    except TRANSIENT as err:
        raise Unavailable(f"the database did not answer ({type(err).__name__}); retry with the same arguments",
                          {"reason": "transient", "retryable": True}) from err
    except gexc.Aborted as err:
        raise Aborted(f"the database aborted the call ({err.message}); retry with the same arguments",
                      {"reason": "transient", "retryable": True}) from err


def handle_without_arguments(
    req: https_fn.CallableRequest, service: Callable[[Client, str], BaseModel]
) -> dict[str, Any]:
    """`handle` for a callable that takes no arguments: `service(db, uid)`; any data but `{}` or none
    is InvalidArgument."""
    return handle(req, NoArgumentsRequest, lambda client, uid, _: service(client, uid))


def caller(req: https_fn.CallableRequest) -> str:
    """The caller's uid; Unauthenticated without one, PermissionDenied for one we cannot use."""
    if req.auth is None or not req.auth.uid:
        raise Unauthenticated("sign in to call this function")
    return policy.caller_uid(req.auth.uid)


def parse(model: type[R], data: Any) -> R:
    """`data` as `model`, or InvalidArgument naming each wrong field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"data must be an object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "data", "problem": e["msg"]}
            for e in err.errors(include_url=False, include_input=False)
        ]
        message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise InvalidArgument(message, {"fields": problems}) from None
