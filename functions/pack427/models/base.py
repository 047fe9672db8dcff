"""The base of every stored document, and the enums everything shares.

Python code uses snake_case attributes; documents and the wire use the seed's
camelCase names (aliases generated from the attribute names).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)
from pydantic.alias_generators import to_camel


class Region(StrEnum):
    EU = "EU"
    US = "US"
    APAC = "APAC"


class QueueStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    DROPPED = "DROPPED"
    QUARANTINED = "QUARANTINED"
    """The stored entry was unusable (another system or an operator wrote it so): set aside, out of
    every due query, until an operator repairs and releases it (queue.quarantine, `scripts/ops quarantined`)."""


DUE_STATUSES = (QueueStatus.PENDING, QueueStatus.FAILED)
"""Statuses a processor may still deliver."""


class Document(BaseModel):
    """Base of stored documents: camelCase in Firestore, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )

    def to_firestore(self) -> dict[str, Any]:
        """The document's fields as Firestore stores them (datetimes kept)."""
        return self.model_dump()


M = TypeVar("M", bound=BaseModel)


def salvage(model: type[M], data: dict[str, Any], *, keep: dict[str, Any] | None = None) -> tuple[M, list[str]]:
    """`data` as `model`, each field that is unusable on its own left to its default.

    For documents other systems write (the chat core, an operator in the console): one odd
    field must not make the whole document unusable.

    Args:
        model: the document's model; every field not in `keep` must have a default.
        data: the stored fields.
        keep: fields validated with every other one (default: none), e.g. a required list
            already cleaned by the caller.

    Returns:
        The model, and the stored names of the fields left out (empty when `data` was valid).

    Raises:
        ValidationError: `keep` itself is not valid.
    """
    keep = keep or {}
    try:
        return model.model_validate({**data, **keep}), []
    except ValidationError:
        pass
    fields, odd = dict(keep), []
    for name, value in data.items():
        if name in keep:
            continue
        try:
            model.model_validate({**keep, name: value})
        except ValidationError:
            odd.append(name)
            continue
        fields[name] = value
    return model.model_validate(fields), odd


def problems(err: ValidationError) -> str:
    """What a validation refused, field by field, as an operator reads it in a log line."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in err.errors())
