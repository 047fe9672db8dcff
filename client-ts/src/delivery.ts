// Delivery: what reaches this device, and its acknowledgement.
//
// A Firestore listener on the user's own inbox (entries after the inbox head's seq when
// the device came online), plus pack427_syncMessages from the stored cursor on start and
// on every reconnect, so nothing that arrived while offline is skipped. Each message is
// stored, then acknowledged; messages are de-duplicated by id (MessageStore); what a
// catch-up brings is handed to onMessagesReceived in message (ULID) order.
//
// Persisted under "sync": the device, the cursor and the messages stored but not
// acknowledged yet.
import { collection, documentId, onSnapshot, orderBy, query, where, type DocumentData, type Unsubscribe } from "firebase/firestore";
import type { ClientContext } from "./context.js";
import { NoAnswerError } from "./errors.js";
import type { RequestOf } from "./generated/api.js";
import { fromInboxEntry, fromWire, type MessagesListener, type StoredMessage } from "./messages.js";
import { ulid } from "./ulid.js";

export interface SyncState {
  deviceId: string;
  cursor: string | null;
  unacked: string[];
  registered: boolean;
}

const ACK_BATCH = 500;

export interface DeliveryHooks {
  /** The inbox head as the server has it (not a cached copy): its unread counts and read positions. */
  onHead(data: DocumentData): void;
  /** A live listener failed: set the whole live set up again (the head, the inbox and the watched chats). */
  restartLive(): void;
}

export interface Delivery {
  /** What "sync" persists. */
  readonly state: SyncState;
  readonly deviceId: string;
  readonly isSyncing: boolean;
  /**
   * The sync state as loaded from the storage (null: none stored). A deviceId given in the
   * options that differs from the stored one starts that device from scratch.
   */
  restore(stored: SyncState | null): void;
  onMessagesReceived(listener: MessagesListener): () => void;
  onSyncComplete(listener: () => void): () => void;
  /**
   * Everything delivered since the stored cursor, page by page until the end of the
   * inbox; each page stored with the cursor after it, then acknowledged. Resolves with
   * the messages new to this device.
   */
  syncMessages(): Promise<readonly StoredMessage[]>;
  /**
   * The chat's whole record (own messages included) from pack427_resyncChat, stored and
   * handed to onMessagesReceived (not acknowledged). Resolves with the messages new to this device.
   */
  resyncChat(chatId: string): Promise<readonly StoredMessage[]>;
  /**
   * Listen to the inbox head and, once the server's head is known, to the inbox after its
   * seq, with a catch-up sync from the stored cursor. Call stopListening() first.
   */
  listen(): void;
  /** Stop the head and inbox listeners (an unfinished catch-up hands over what it has). */
  stopListening(): void;
  dispose(): void;
}

export function createDelivery(context: ClientContext, hooks: DeliveryHooks): Delivery {
  const { calls, persistence, userId } = context;
  let sync: SyncState = { deviceId: "", cursor: null, unacked: [], registered: false };
  let syncing = 0;
  let syncPromise: Promise<readonly StoredMessage[]> | null = null;
  let syncAgain = false;
  let acking: Promise<void> | null = null;
  let ackTimer: ReturnType<typeof setTimeout> | null = null;
  /** Catch-ups (the sync after coming online) under way: new messages are announced after them. */
  let catchUps = 0;
  let unannounced: StoredMessage[] = [];
  let liveUnsubs: Unsubscribe[] = [];
  /** Bumped whenever the live set stops: callbacks of an older set do nothing. */
  let liveGeneration = 0;
  let liveFailures = 0;
  const messageListeners = new Set<MessagesListener>();
  const syncListeners = new Set<() => void>();

  const announce = (messages: readonly StoredMessage[]): void => {
    for (const listener of [...messageListeners]) {
      try {
        listener(messages);
      } catch (error) {
        context.report(error);
      }
    }
  };

  /**
   * The end of a catch-up: what it stored (sync pages, and what the live listener
   * saw meanwhile) is handed over in message order, so each chat's messages come in
   * order even when the pages and the listener overlapped or crossed.
   */
  const endCatchUp = (): void => {
    catchUps -= 1;
    if (catchUps > 0 || !unannounced.length) return;
    const messages = unannounced.sort((a, b) => (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0));
    unannounced = [];
    if (!context.isDisposed()) announce(messages);
  };

  const ackStored = (): Promise<void> => {
    acking ??= (async () => {
      await null; // acking is assigned before the body can finish
      try {
        while (sync.unacked.length && context.canWork()) {
          const ids = sync.unacked.slice(0, ACK_BATCH);
          await calls.callWithRetries("pack427_ackMessages", { messageIds: ids, deviceId: sync.deviceId }, true);
          const done = new Set(ids);
          sync.unacked = sync.unacked.filter((id) => !done.has(id));
          persistence.markDirty("sync");
          await persistence.persist();
        }
      } catch (error) {
        if (!(error instanceof NoAnswerError)) context.report(error);
      } finally {
        acking = null;
      }
    })();
    return acking;
  };

  /** A burst from the live listener is acknowledged together, ackDelayMs after its first message. */
  const scheduleAck = (): void => {
    if (ackTimer) return;
    ackTimer = setTimeout(() => {
      ackTimer = null;
      void ackStored();
    }, context.options.ackDelayMs ?? 300);
  };

  /** Store inbox messages (and the cursor after them), then tell the listeners, then acknowledge. */
  const ingest = async (messages: readonly StoredMessage[], cursor?: string, ackNow = true): Promise<StoredMessage[]> => {
    const fresh = context.messages.add(messages);
    const unacked = new Set(sync.unacked);
    for (const m of fresh) unacked.add(m.messageId);
    sync.unacked = [...unacked];
    if (cursor !== undefined) sync.cursor = cursor;
    persistence.markDirty("sync");
    await persistence.persist();
    if (fresh.length) {
      context.changed();
      if (catchUps > 0) unannounced.push(...fresh);
      else announce(fresh);
    }
    if (ackNow) void ackStored();
    else scheduleAck();
    return fresh;
  };

  const syncMessages = (): Promise<readonly StoredMessage[]> => {
    if (syncPromise) {
      syncAgain = true;
      return syncPromise;
    }
    syncPromise = (async () => {
      await context.load();
      const fresh: StoredMessage[] = [];
      syncing += 1;
      context.changed();
      try {
        do {
          syncAgain = false;
          if (!sync.registered) {
            await calls.callWithRetries("pack427_registerDevice", {
              deviceId: sync.deviceId,
              platform: context.options.platform ?? "web",
              appVersion: context.options.appVersion ?? "1",
            }, true);
            sync.registered = true;
          }
          for (;;) {
            const data: RequestOf<"pack427_syncMessages"> = { deviceId: sync.deviceId };
            // Without a cursor (a new device) the engine starts at the device's stored position:
            // the inbox's start, or after the last page it served. The live listener of a
            // device without a cursor covers the whole inbox (see listen).
            // Without a cursor, a syncId: the retries below of a lost answer get the same page.
            if (sync.cursor !== null) data.cursor = sync.cursor;
            else data.syncId = ulid();
            const page = await calls.callWithRetries("pack427_syncMessages", data, true);
            fresh.push(...(await ingest(page.messages.map(fromWire), page.cursor)));
            if (!page.hasMore) break;
          }
        } while (syncAgain);
      } finally {
        syncing -= 1;
        syncPromise = null;
        context.changed();
      }
      for (const listener of [...syncListeners]) listener();
      return fresh;
    })();
    return syncPromise;
  };

  /** A listener of the live set failed (a rule refused, the token was not ready...): set it up again later. */
  const liveFailed = (error: unknown, generation: number): void => {
    context.report(error);
    if (generation !== liveGeneration || !context.canWork()) return;
    liveFailures += 1;
    setTimeout(() => {
      if (generation === liveGeneration && context.canWork()) hooks.restartLive();
    }, Math.max(1_000, calls.delay(liveFailures)));
  };

  const listen = (): void => {
    const generation = ++liveGeneration;
    const live = () => generation === liveGeneration && context.canWork();
    const db = context.firestore;
    let inboxStarted = false;
    const startInbox = (fromSeq: number) => {
      inboxStarted = true;
      // A device without a cursor listens from the inbox's start: its first sync page is
      // the one page no cursor can replay (the engine resumes from the last page it served).
      const from = sync.cursor === null ? 0 : fromSeq;
      const inbox = query(collection(db, "users", userId, "inbox"), where("seq", ">", from), orderBy("seq"));
      // Until the sync below has brought everything up to fromSeq, new messages are
      // stored at once and handed over at its end, in order.
      catchUps += 1;
      let caughtUp = false;
      const done = () => {
        if (caughtUp) return;
        caughtUp = true;
        endCatchUp();
      };
      liveUnsubs.push(() => done());
      liveUnsubs.push(onSnapshot(inbox, (snap) => {
        if (!live()) return;
        const added: StoredMessage[] = [];
        for (const change of snap.docChanges()) {
          if (change.type !== "added") continue;
          const m = fromInboxEntry(change.doc.data(), change.doc.id);
          if (m) added.push(m);
        }
        if (added.length) void ingest(added, undefined, false).catch((e: unknown) => context.report(e));
      }, (error) => liveFailed(error, generation)));
      // Everything up to fromSeq (and more) comes from the stored cursor.
      void syncMessages().catch((e: unknown) => {
        if (!(e instanceof NoAnswerError)) context.report(e);
      }).finally(done);
    };
    // The head through a query of its one document, not a document listener: the Firestore
    // emulator's listener of a document that does not exist yet sometimes never sees it
    // created (a getDocFromServer seconds later still found nothing), and the head of a new
    // user is created by their first message. Firestore bills both alike.
    const head = query(collection(db, "users", userId, "inboxHead"), where(documentId(), "==", "current"));
    liveUnsubs.push(onSnapshot(head, { includeMetadataChanges: true }, (snap) => {
      if (!live()) return;
      // The inbox listener starts at the server's seq, not at a cached one: what
      // arrived while offline comes from the stored cursor (sync).
      if (snap.metadata.fromCache) return;
      liveFailures = 0;
      const data = snap.docs[0]?.data() ?? {};
      hooks.onHead(data);
      if (!inboxStarted) startInbox(typeof data["seq"] === "number" ? data["seq"] : 0);
    }, (error) => liveFailed(error, generation)));
  };

  return {
    get state() {
      return sync;
    },
    get deviceId() {
      return sync.deviceId;
    },
    get isSyncing() {
      return syncing > 0;
    },
    restore(stored) {
      const deviceId = context.options.deviceId;
      sync = stored ?? { deviceId: deviceId ?? ulid(), cursor: null, unacked: [], registered: false };
      if (deviceId !== undefined && sync.deviceId !== deviceId) {
        sync = { deviceId, cursor: null, unacked: [], registered: false };
      }
      sync.registered = false; // registerDevice once per client (it records appVersion)
    },
    onMessagesReceived(listener) {
      messageListeners.add(listener);
      return () => {
        messageListeners.delete(listener);
      };
    },
    onSyncComplete(listener) {
      syncListeners.add(listener);
      return () => {
        syncListeners.delete(listener);
      };
    },
    syncMessages,
    async resyncChat(chatId) {
      await context.load();
      const fresh: StoredMessage[] = [];
      let cursor: string | null = null;
      for (;;) {
        const data: RequestOf<"pack427_resyncChat"> = { chatId };
        if (cursor !== null) data.cursor = cursor;
        const page = await calls.callWithRetries("pack427_resyncChat", data);
        const added = context.messages.add(page.messages.map(fromWire));
        await persistence.persist();
        if (added.length) {
          fresh.push(...added);
          context.changed();
          announce(added);
        }
        cursor = page.cursor;
        if (!page.hasMore || cursor === null) break;
      }
      return fresh;
    },
    listen,
    stopListening() {
      liveGeneration += 1;
      for (const unsub of liveUnsubs) unsub();
      liveUnsubs = [];
    },
    dispose() {
      if (ackTimer) clearTimeout(ackTimer);
      messageListeners.clear();
      syncListeners.clear();
    },
  };
}
