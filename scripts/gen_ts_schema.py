"""Print one JSON Schema document with every callable's request and response model
(functions/pack427/models/api.py) and the table of callables, for scripts/gen-ts-types.

Requests are described as the engine validates them (mode "validation"), responses as
it sends them (mode "serialization": model_dump(mode="json"), so datetimes are strings).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "functions"))

from pydantic import BaseModel  # noqa: E402
from pydantic.json_schema import models_json_schema  # noqa: E402

from pack427.models import api  # noqa: E402

CALLABLES: list[tuple[str, type[BaseModel], type[BaseModel]]] = [
    ("pack427_sendMessage", api.SendMessageRequest, api.SendMessageResult),
    ("pack427_cancelScheduledMessage", api.CancelScheduledMessageRequest, api.CancelScheduledMessageResult),
    ("pack427_listScheduledMessages", api.NoArgumentsRequest, api.ListScheduledMessagesResult),
    ("pack427_registerDevice", api.RegisterDeviceRequest, api.RegisterDeviceResult),
    ("pack427_syncMessages", api.SyncMessagesRequest, api.SyncMessagesResult),
    ("pack427_ackMessages", api.AckMessagesRequest, api.AckMessagesResult),
    ("pack427_getChatList", api.GetChatListRequest, api.GetChatListResult),
    ("pack427_resyncChat", api.ResyncChatRequest, api.ResyncChatResult),
    ("pack427_updateTypingState", api.UpdateTypingStateRequest, api.UpdateTypingStateResult),
    ("pack427_getTypingUsers", api.GetTypingUsersRequest, api.GetTypingUsersResult),
    ("pack427_markAsRead", api.MarkAsReadRequest, api.MarkAsReadResult),
    ("pack427_getUnreadCounts", api.NoArgumentsRequest, api.UnreadCountsResult),
    ("pack427_recalculateUnreadCounters", api.RecalculateUnreadCountersRequest, api.RecalculateUnreadCountersResult),
]


def _without_titles(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_titles(v) for k, v in value.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(value, list):
        return [_without_titles(v) for v in value]
    return value


def main() -> None:
    models: list[tuple[type[BaseModel], Any]] = []
    for _, request, response in CALLABLES:
        models += [(request, "validation"), (response, "serialization")]
    models = list(dict.fromkeys(models))
    _, schema = models_json_schema(models, ref_template="#/$defs/{model}")
    defs = schema["$defs"]
    for name, definition in defs.items():
        model = getattr(api, name, None)
        if isinstance(model, type) and issubclass(model, api.Response) and "properties" in definition:
            # model_dump writes every field, defaults included: each one is always there.
            definition["required"] = list(definition["properties"])
    defs = _without_titles(defs)  # the $defs keys name the types; titles would make aliases of fields
    table = [{"name": name, "request": request.__name__, "response": response.__name__}
             for name, request, response in CALLABLES]
    json.dump({"$defs": defs, "callables": table}, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
