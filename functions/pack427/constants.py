"""The seed's constants and the few limits this port adds.

Seed values are kept exactly; the added limits say why they exist.
"""

MAX_ATTEMPTS = 5
"""Delivery attempts before a queue entry is DROPPED (dead letter)."""

BASE_DELAY_MS = 1_000
"""Back-off after the first failed attempt; doubles with each further failure."""

MAX_DELAY_MS = 3_600_000
"""Back-off never waits longer than this (1 hour)."""

BATCH_SIZE = 200
"""Queue entries one processor batch takes."""

TYPING_TTL_SECONDS = 10
SYNC_BATCH_SIZE = 100
MAX_MESSAGES_PER_MINUTE = 60
MAX_RATE_LIMIT = 1_000
"""The highest per-minute limit an operator can set: the window document keeps one record per send."""

MAX_TEXT_LENGTH = 4_000
"""Characters in a message text: bounds the inbox entry and the push payload."""

MAX_CONTENT_REF_LENGTH = 1_024
"""Characters in a contentRef (a storage path or URL chosen by the app)."""

MAX_ID_LENGTH = 128
"""Characters in a chat id or user id: Firestore document ids stay short."""

MAX_RECIPIENTS = 10_000
"""Recipients of one message. A chat over INLINE_MAX_RECIPIENTS is delivered
by fan-out in chunks (see fan_out), whose job lists the recipients in the job
document and, past FAN_OUT_INLINE_BYTES, in part documents of at most
FAN_OUT_PART_BYTES: 10,000 ids of 128 characters (up to 5.1 MB of UTF-8) fit
whatever they are made of."""

DELIVERED_RETENTION_DAYS = 7
"""How long a DELIVERED queue entry (and the trail in its history) is kept: it carries
`expiresAt` = deliveredAt + this, and Firestore's TTL policy on it deletes the entry
within a day after that. DROPPED entries are dead letters: no expiresAt, they stay
until an operator acts."""

HISTORY_READ_CHUNK = 500
"""Participants' inbox entries `ops history` reads a round trip (a fan-out's placements)."""

IDEMPOTENCY_RETENTION_DAYS = 31
"""How long an idempotency record is kept after its send (after its deliverAt, for a
scheduled one): `expiresAt`, which Firestore's TTL policy deletes within a day after."""

CLIENT_MESSAGE_ID_MAX_AGE_DAYS = 30
"""A send whose clientMessageId (a ULID) was made longer ago than this, and whose record
is not found, is refused (failed-precondition, reason client_message_id_expired): it may
be a retry whose record TTL has deleted, and accepting it could duplicate the message.
One day shorter than IDEMPOTENCY_RETENTION_DAYS, for clients whose clock runs ahead."""

PROCESSOR_TIME_BUDGET_SECONDS = 50
"""How long one scheduled run keeps draining batches: it ends before the next
one-minute run starts."""

MAX_DEVICE_ID_LENGTH = 128
MAX_APP_VERSION_LENGTH = 64
MAX_CURSOR_LENGTH = 512
"""Our cursors are well under 200 characters; anything longer is not one of ours."""

MAX_UNIX_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant Firestore timestamps hold."""

MAX_ACK_IDS = 500
"""Message ids in one ack: the acks of one sync page (SYNC_BATCH_SIZE) fit many times."""

LAST_MESSAGE_PREVIEW_LENGTH = 200
"""Characters of the last message kept on the chat for chat lists."""

SEND_CONFLICT_RETRIES = 100
"""Attempts of a send whose chat or rate window changed under it (a
concurrent send to the chat, or by the same user): each retry reads them
again and takes the next message id. N concurrent sends need up to N rounds."""

SEND_CONFLICT_BACKOFF_SECONDS = 0.02
SEND_CONFLICT_BACKOFF_CAP_SECONDS = 0.5
"""Pause before a send's retry: random, up to 20 ms doubling with each
conflict, at most 0.5 s, so that a crowd of concurrent sends thins out
instead of colliding again in lockstep."""

# ------------------------------------------------------------ abuse protection

RATE_WINDOW_SECONDS = 60
"""MAX_MESSAGES_PER_MINUTE counts the sends of any sliding 60 seconds."""

SPAM_MAX_CHATS_SAME_TEXT = 5
"""The default spam rule: one text may go to at most this many different
chats within RATE_WINDOW_SECONDS; the next chat is refused."""

SPAM_MIN_TEXT_LENGTH = 12
"""Texts shorter than this ("ok", "hi!", an emoji) are what people really send
everywhere: the spam rule ignores them."""

INBOX_HEAD_RETRIES = 50
"""Attempts to place a message in an inbox whose head moved under it (another
delivery to the same user, a read, an ack)."""

MAX_TRACKED_CHATS = 500
"""Chats an inbox head holds (unread count, read position, newest message). Past it, or past
INBOX_HEAD_MAX_BYTES, the fully read chats whose newest message is oldest are pruned (their read
position stays in their read receipt), and then the chats with unread messages that were least
recently active are parked: each in its own document (`users/{uid}/inboxChats/{chatId}`), its
unread count kept on the head in `parkedUnread` (see inbox.bounded). About 90 bytes a chat with
Firebase ids."""

INBOX_HEAD_MAX_BYTES = 256 * 1024
"""The most an inbox head may take (Firestore's size: see store.document_size): a quarter of
Firestore's 1 MiB a document, whatever the chats' ids, so that a fan-out chunk's commit of many
heads stays sized (store.commits) and a listener's snapshot stays small."""

COMMIT_MAX_WRITES = 500
"""Firestore's limit on the writes of one commit."""

COMMIT_MAX_BYTES = 3 * 1024 * 1024 + 512 * 1024
"""The bytes one commit of the engine may take (store.commits), its documents' Firestore sizes and
an allowance a write (store.WRITE_OVERHEAD_BYTES). Firestore refuses a request over 10 MiB, and
the Firestore emulator's gRPC server one over 4 MiB (`gRPC message exceeds maximum size 4194304`):
3.5 MiB holds on both, with room for what the allowance misses. It binds only for large heads
(14 heads at their 256 KiB bound; a head of 500 chats of Firebase ids is about 45 KB, 80 of them)."""

INLINE_MAX_RECIPIENTS = 50
"""Recipients a send places in their inboxes itself, in its own commit
(see sending). Such a commit is conditional on every recipient's inbox head,
so the chance that one of them moves first grows with their number; larger
chats go through the queue, one commit per recipient. The load run
(scripts/bench, section load) measured groups of up to 50 placed this way at
a p95 of 31-54 ms, against 2-9 s through the queue's per-recipient triggers."""

INLINE_ATTEMPTS = 2
"""Attempts of a send that may place its message itself; a send that lost
that many races (a recipient's head, or the chat, moved first) goes on as a
fan-out job if its chat is a group (its commit then holds no head, so a hot
chat's sends race only for the chat document; the chat's next messages
follow through fan-out until it has none left), through the queue if it is
a direct chat."""

FAN_OUT_CHUNK = 150
"""Recipients one fan-out commit handles at most: up to three writes each (inbox
entry, head, push entry) and the job's cursor. Fewer when their writes take more than
COMMIT_MAX_WRITES or COMMIT_MAX_BYTES (large heads, parked chats): the chunk is cut where its
commit would pass either (store.fitting), and the cursor moves by what was committed."""

FAN_OUT_INLINE_BYTES = 256 * 1024
"""Bytes of recipient ids (Firestore's size of a string: its UTF-8 bytes and 1) a fan-out job
document holds itself, beside the message (at most about 20 KB of text and contentRef): about
9,000 Firebase uids (28 characters), 2,000 ids of 128 ASCII characters. The rest go in parts."""

FAN_OUT_PART_BYTES = 512 * 1024
"""Bytes of recipient ids one part document of a fan-out job holds: half of Firestore's 1 MiB.
10,000 ids of the longest the engine accepts (128 characters of 4 UTF-8 bytes) take 10 parts,
and the accepting commit (about 5.1 MB) stays under Firestore's 10 MiB."""

FAN_OUT_PLACE_ATTEMPTS = 2
"""Attempts of a fan-out chunk to place its messages in inboxes (conditional
on every head in it); a chunk that lost that many races goes through the queue."""

FAN_OUT_STALLED_SECONDS = 60
"""A fan-out job unchanged for this long lost its worker (a crash, a timeout):
the processor resumes it."""

FAN_OUT_WAITING_LOOKUP = 500
"""Queue entries of a chat awaiting their inbox a fan-out reads to know which
recipients must get the message through the queue, behind them; with more,
the whole fan-out goes through the queue."""

MAX_SCHEDULE_DAYS = 30
"""How far ahead a message can be scheduled (`deliverAt`)."""

SCHEDULED_BATCH = 50
"""Due scheduled messages one processor round delivers (one query), before that round's queue
batches: scheduled messages and retries take turns (processor.drain). Sent one after the other,
a few round trips each: about 1-3 s a batch."""

SCHEDULED_SHARE = 0.5
"""Of a processor run's time budget, the part scheduled deliveries may take while any region's
queue still has due entries: 25 of PROCESSOR_TIME_BUDGET_SECONDS' 50 s. Once the queues are
drained, scheduled deliveries may use the rest of the run; what is left goes next run."""

MAX_LISTED_SCHEDULED = 200
"""Scheduled messages pack427_listScheduledMessages returns (the soonest; `hasMore` says if there are more)."""

RECURRENCE_HORIZON_DAYS = 365
"""A recurring series' horizon: every occurrence at most this many days after its deliverAt (recurrence)."""

RECURRENCE_MAX_OCCURRENCES = 400
"""The most occurrences one series may have (its COUNT, or what its UNTIL makes)."""

RECURRENCE_MAX_RULE_LENGTH = 500
"""The longest `recurrence.rrule` accepted (characters)."""

RECURRENCE_LISTED_UPCOMING = 10
"""Upcoming occurrences pack427_listScheduledMessages shows of a series (each one can be cancelled)."""

# ------------------------------------------------------------ real-time signals

TYPING_REFRESH_SECONDS = 5
"""A "typing" update rewrites the typing event only when less than this is
left of its TTL: a burst of keystrokes costs one write per 5 s, not one each,
and an indicator still disappears 5 to 10 s after the last keystroke."""

UNREAD_WRITE_RETRIES = 50
"""Attempts of a read (markAsRead) or recount whose inbox head other writers
keep changing under it (a burst of messages, reads from several devices):
each attempt reads again; one writer wins each round."""

RECALCULATE_PARALLELISM = 16
"""Counters one recalculation recounts at once: each is a few round trips."""

RECALCULATE_PAGE = 200
"""Chats one pack427_recalculateUnreadCounters call recounts (`hasMore` and a
`cursor` for the rest): at most 3 reads a chat (its document in the member
query, a count aggregation, and its read receipt or the check that the user
left it) and 4 more (one more member, the head, the newest inbox entry when the
head is rebuilt, the caller's call window): at most 604 reads and 2 writes a
call, whatever the number of chats the user is in."""

MAX_RECALCULATIONS_PER_MINUTE = 10
"""pack427_recalculateUnreadCounters calls (pages) one user may make in any
RATE_WINDOW_SECONDS; the next is resource-exhausted. 10 pages of
RECALCULATE_PAGE: 2,000 chats a minute, at most about 6,000 reads a minute per user."""

DEFAULT_CHAT_LIST_LIMIT = 20
MAX_CHAT_LIST_LIMIT = 50
"""Chats per chat-list page."""

RECEIPT_DETAIL_MAX_RECIPIENTS = 50
"""A last message of the caller's to at most this many recipients gets each one's receipt
status in the chat list (3 reads a recipient); to more, a summary (two count aggregations)."""

RECEIPT_DETAIL_BUDGET = 200
"""Recipients one chat-list page reads member by member (3 reads each): the chats of the page
past it, newest first, get the summary instead. With the page's chats, head and counts, a
call reads at most about 50 + 2 + 3 x 200 + 50 x 2 x 10 = 1,650 documents and index pages,
whatever the groups' sizes."""

CHAT_LIST_PARTICIPANTS = 50
"""Participant ids a chat-list item carries (the first ones, as stored); `participantCount`
has them all. A group of 10,000 would otherwise put 1.3 MB of ids in each item."""

# ------------------------------------------------------------- operability

SCALE_UP_DEPTH = 5_000
"""Queue depth of a region above which the processor takes LARGE_BATCH_SIZE batches (seed)."""

FAN_OUT_DEPTH = 10_000
"""Queue depth of a region above which the processor fans out to QUEUE_SHARDS
parallel workers, one per slice of the queue (seed: add parallel workers)."""

LARGE_BATCH_SIZE = 1_000
"""Entries one processor batch takes under back-pressure."""

QUEUE_SHARDS = 4
"""Slices of each region's queue (by chat and recipient) for parallel workers."""

SETTINGS_WRITE_RETRIES = 5
"""Attempts of an operator's change of config/engine against concurrent changes (settings)."""
