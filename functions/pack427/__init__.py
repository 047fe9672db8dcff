"""PACK 427 messaging delivery engine: the service behind the deployed functions.

Folders by role. Imports run one way: a folder imports the foundation and the
folders listed as below it, never one above or beside it
(tests/unit/test_layout.py fails on an import that runs against this).

The foundation, at the package root (imports only itself):
    models           pydantic models, a module per kind: base, ids, chats,
                     queue_entries, inboxes, presence, operability, api
    paths            the only module that knows Firestore paths (and the TTL fields, index exemptions)
    store            the seam of conditional writes: a document as read, writes
                     conditional on it, one retry-on-conflict policy
    db, clock        the shared Firestore client; time, injectable in tests
    errors           the errors callables map to HttpsError
    constants        the seed's constants and this port's limits
    settings         runtime settings: the rollback switch, the rate limit
    chat_core        reads of the chat core's chats/{chatId} and users/{uid}
    inbox            inbox entries numbered and counted under the user's head (the
                     head's pure transitions, and its reads and commits)
    routing          the region router: each user's home region
    audit            the audit trail: queue entry histories, refused sends, `ops history`
    alerts           structured alert log lines
    locks            turn-taking of one instance's concurrent sends

guarding/ (imports the foundation): who may do what
    callables        callable-function adapter: auth, validation, error mapping
    policy           authorization: caller uid, participation, 18+, blocks
    rate_limit       60 sends a minute per user, exact under concurrency
    fraud            the spam/fraud hook
    admission        the paid-chat admission hook (token checks before a send)

delivering/ (imports guarding): a message into each recipient's inbox
    placing          what delivering one message to one recipient writes
    queue            a queue entry's life: creation, state changes with their
                     history, back-off, expiry
    backlog          reading the queues: due entries, entries awaiting their inbox, depth
    delivery         one entry into its inbox, in chat order; the trigger's attempt
    fan_out          groups beyond 50: delivery in chunks, resumable
    rollback         mode direct: delivery in the send's own request
    notifier         push notifications for offline recipients

accepting/ (imports delivering, guarding): a message into the engine
    sending          accepting a message (idempotent), the creation seam: placed
                     in small chats' inboxes by its own commit, queued, or fanned out
    send_plan        a send's pure decisions: its id, what the chat keeps, whom it
                     places, the idempotency record's retention
    scheduling       scheduled messages: delivered at their time, cancellable, listed;
                     recurring series, an occurrence at a time
    recurrence       recurring series' rules (RFC 5545 RRULE subset): validation and occurrences
    nudges           system nudges: the engine's own messages to a user
    chat_core_intake chat-core mode: the trigger that takes the core's own messages, the sweep

reading/ (imports delivering, guarding): what a user's apps read
    sync, cursors    devices, sync pages, acks, chat resync; opaque cursors
    unread           read positions, unread counts, recalculation
    chat_list        the caller's chats with unread counts and receipts
    typing_state     typing indicators

workers/ (imports accepting, delivering, guarding): the background runs
    processor        the minute's run: stalled fan-outs, due scheduled messages, the
                     chat-core sweep, then batches of due entries under back-pressure

operating/ (imports every folder): running the engine and seeing into it
    metrics          queue figures, stored and logged, with alerts
    alert_policies   the alerts as code: log-based metrics and alert policies (monitoring/)
    heatmap          delivery latency by weekday and hour, per region, as a PNG
    ops              operator repairs: dead letters requeued, a chat resynced, an inbox repaired
    cli              the operator commands (`scripts/ops`)
"""
