"""Helpers shared by the tests: test data in the chat core's shape (chatcore), queue entries
(entries), emulator ID tokens (idtokens), real-time signal fixtures (signals), and the
emulator projects the tests use (emulator)."""
