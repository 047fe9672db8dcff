"""PACK 427 messaging delivery engine: the service behind the deployed functions.

Modules, one concern each:
    models           pydantic models, a module per kind: base, ids, chats,
                     queue_entries, inboxes, presence, operability, api
    paths            the only module that knows Firestore paths
    store            the seam of conditional writes: a document as read, writes
                     conditional on it, one retry-on-conflict policy
    db, clock        the shared Firestore client; time, injectable in tests
    chat_core        reads of the chat core's chats/{chatId} and users/{uid}
    chat_core_intake chat-core mode: the trigger that takes the core's own messages
    routing          the region router: each user's home region
    policy           authorization: caller uid, participation, 18+, blocks
    rate_limit       60 sends a minute per user, exact under concurrency
    fraud            the spam/fraud hook
    admission        the paid-chat admission hook (token checks before a send)
    nudges           system nudges: the engine's own messages to a user
    locks            turn-taking of one instance's concurrent sends
    sending          accepting a message (idempotent), the creation seam: placed
                     in small chats' inboxes by its own commit, queued, or fanned out
    send_plan        a send's pure decisions: its id, what the chat keeps, whom it places
    scheduling       scheduled messages: delivered at their time, cancellable, listed
    placing          what delivering one message to one recipient writes
    fan_out          groups beyond 50: delivery in chunks, resumable
    inbox            inbox entries numbered and counted under the user's head
    queue            a queue entry's life: creation, state changes with their
                     history, cleanup
    backlog          reading the queues: due entries, entries awaiting their inbox, depth
    delivery         one entry into its inbox, in chat order; the trigger's attempt
    processor        batches of due entries; a region's backlog under back-pressure
    rollback         mode direct: delivery in the send's own request
    notifier         push notifications for offline recipients
    unread           read positions, unread counts, recalculation
    sync, cursors    devices, sync pages, acks, chat resync; opaque cursors
    chat_list        the caller's chats with unread counts and receipts
    typing_state     typing indicators
    audit            the audit trail: queue entry histories, refused sends
    metrics          queue figures, stored and logged, with alerts
    heatmap          delivery latency by weekday and hour, per region, as a PNG
    alerts           structured alert log lines
    alert_policies   the alerts as code: log-based metrics and alert policies (monitoring/)
    settings         runtime settings: the rollback switch, the rate limit
    ops              operator repairs: dead letters requeued, a chat resynced
    cli              the operator commands (`scripts/ops`)
    callables        callable-function adapter: auth, validation, error mapping
    errors           the errors callables map to HttpsError
    constants        the seed's constants and this port's limits
"""
