"""What may be a document id of ours, and the id types requests use.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    StringConstraints,
)
from ulid import ULID

from .. import constants

_DOC_ID = re.compile(r"^(?!\.\.?\Z)(?!__.*__\Z)[^/]+\Z", re.DOTALL)


class DocumentIdError(ValueError):
    pass


def check_document_id(value: object) -> str:
    """`value` if it can be a Firestore document id of ours; DocumentIdError otherwise.

    A non-empty string of at most MAX_ID_LENGTH characters, valid Unicode,
    without '/', other than '.' and '..', not of the reserved form `__x__`.
    """
    if not isinstance(value, str) or not 0 < len(value) <= constants.MAX_ID_LENGTH:
        raise DocumentIdError(f"must be a string of 1 to {constants.MAX_ID_LENGTH} characters")
    if not _DOC_ID.match(value):
        raise DocumentIdError("must be a valid document id (no '/', not '.', '..' or '__name__')")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentIdError("must be valid Unicode") from None
    return value


def is_document_id(value: object) -> bool:
    """Whether `value` can be a document id of ours (check_document_id, as a test)."""
    try:
        check_document_id(value)
    except DocumentIdError:
        return False
    return True


def _firestore_id(value: str) -> str:
    check_document_id(value)
    return value


def _ulid(value: str) -> str:
    try:
        ULID.from_str(value)
    except ValueError:
        raise ValueError("must be a ULID (26 characters of Crockford base32)") from None
    return value.upper()


DocumentId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=constants.MAX_ID_LENGTH),
    AfterValidator(_firestore_id),
]


UlidString = Annotated[str, StringConstraints(min_length=26, max_length=26), AfterValidator(_ulid)]


def _message_id(value: str) -> str:
    try:
        return _ulid(value)
    except ValueError:
        return _firestore_id(value)


MessageId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=constants.MAX_ID_LENGTH),
    AfterValidator(_message_id),
]
"""A message id: the engine's ULID (stored upper case, so taken in either case) or a chat core's own id."""
