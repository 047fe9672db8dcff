"""Accepting: a message into the engine, idempotently, ordered in its chat.

The send (sending) and its pure decisions (send_plan), scheduled messages (scheduling),
the engine's own nudges (nudges), and, in chat-core mode, the intake of the chat core's
messages (chat_core_intake). Imports the foundation, guarding and delivering.
"""
