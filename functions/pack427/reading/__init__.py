"""Reading: what a user's apps read and acknowledge.

Devices and sync pages, acks, chat resync and their cursors (sync, cursors), read
positions and unread counts (unread), the chat list (chat_list), typing indicators
(typing_state). Imports the foundation, guarding and delivering (resync places what
an inbox misses); never accepting.
"""
