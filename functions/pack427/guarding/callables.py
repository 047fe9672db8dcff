"""The adapter between callable functions and the service.

One path for every callable: require auth (and a uid that can key the
caller's documents, see policy), validate `data` into the request model, call
the service, return its result as JSON, and turn service errors into
`HttpsError`s that name the problem. Bad input never becomes INTERNAL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from firebase_functions import https_fn
from google.cloud.firestore import Client
from pydantic import BaseModel, ValidationError

from .. import db
from ..errors import EngineError, InvalidArgument, Unauthenticated
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
        request = parse(request_model, req.data)
        return service(db.client(), uid, request).model_dump(mode="json")
    except EngineError as err:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode(err.code), err.message, err.details) from None


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
