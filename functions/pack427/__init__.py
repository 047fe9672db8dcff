"""PACK 427 messaging delivery engine: the service behind the deployed functions.

Modules, one concern each:
    models        pydantic models of documents, requests and responses
    paths         the only module that knows Firestore paths
    store         the seam of conditional writes: a document as read, writes
                  conditional on it, one retry-on-conflict policy
    db, clock     the shared Firestore client; time, injectable in tests
    chat_core     reads of the chat core's chats/{chatId} and users/{uid}
    routing       the region router: each user's home region
    policy        authorization: caller uid, participation, 18+, blocks
    rate_limit    60 sends a minute per user, exact under concurrency
    fraud         the spam/fraud hook
    admission     the paid-chat admission hook (token checks before a send)
    nudges        system nudges: the engine's own messages to a user
    locks         turn-taking of one instance's concurrent sends
    sending       accepting a message (idempotent), the creation seam; it
                  places the message in small chats' inboxes itself
    inbox         inbox entries numbered and counted under the user's head
    queue         the per-region queue: state changes (with their history) and queries
    delivery      inbox delivery from the queue, the trigger's attempt, the processor
    notifier      push notifications for offline recipients
    unread        read positions, unread counts, recalculation
    sync, cursors devices, sync pages, acks, chat resync; opaque cursors
    chat_list     the caller's chats with unread counts and receipts
    typing_state  typing indicators
    audit         the audit trail: queue entry histories, refused sends
    metrics       queue figures, stored and logged, with alerts
    alerts        structured alert log lines
    settings      runtime settings: the rollback switch, the rate limit
    ops           operator commands
    callables     callable-function adapter: auth, validation, error mapping
    errors        the errors callables map to HttpsError
    constants     the seed's constants and this port's limits
"""
