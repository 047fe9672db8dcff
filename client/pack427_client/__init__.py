"""Call the engine's callable functions over HTTP, as an app does.

    client = CallableClient(functions_url, id_token)
    client.call("pack427_sendMessage", {"chatId": ..., "clientMessageId": ..., "text": ...})

Errors come back as CallableError with the protocol's status (for example
"INVALID_ARGUMENT"), message and details.
"""

from .callable import CallableClient, CallableError
from .emulator import EmulatorUser, sign_up

__all__ = ["CallableClient", "CallableError", "EmulatorUser", "sign_up"]
