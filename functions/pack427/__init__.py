"""PACK 427 messaging delivery engine: the service behind the deployed functions.

Modules, one concern each:
    models     pydantic models of documents, requests and responses
    paths      the only module that knows Firestore paths
    chat_core  reads of the chat core's chats/{chatId} and users/{uid}
    sending    accepting a message (idempotent), the creation seam
    queue      the per-region queue: state changes and queries
    delivery   inbox delivery, the trigger's first attempt, batch processing
    notifier   push notifications for offline recipients
    audit      the audit trail of queue state changes
    billing    the one billing request per message
    metrics    queue figures, stored and logged, with alerts
    alerts     structured alert log lines
    callables  callable-function adapter: auth, validation, error mapping
"""
