"""The base of every stored document, and the enums everything shares.

Python code uses snake_case attributes; documents and the wire use the seed's
camelCase names (aliases generated from the attribute names).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
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
