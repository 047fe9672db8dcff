// One user's chat on one device: the public client, which wires its parts.
//
// outbox.ts       what this device writes: stored first, then sent, retried with the same clientMessageId.
// delivery.ts     what reaches it: the inbox head and inbox listeners, sync pages, acks, catch-up order.
// signals.ts      unread counts, read receipts and typing (watches.ts: the per-chat listeners hooks hold).
// messages.ts     the stored messages, de-duplicated, per chat in message order.
// store.ts        the snapshot store and chat views the React hooks read.
// retry.ts        calling the engine: back-off, rate-limit waits, reachability.
// persistence.ts  the storage keys and the order they are written in.
// context.ts      what the parts share; fields.ts: reading Firestore fields defensively.
import type { FirebaseApp } from "firebase/app";
import { getFirestore, type Firestore } from "firebase/firestore";
import { getAuth, onAuthStateChanged } from "firebase/auth";
import { getFunctions } from "firebase/functions";
import { firebaseInvoker, typedCall, type Invoker } from "./callables.js";
import { alwaysOnline, type Connectivity } from "./connectivity.js";
import type { ClientContext } from "./context.js";
import { createDelivery, type Delivery, type SyncState } from "./delivery.js";
import { NoAnswerError, Pack427Error } from "./errors.js";
import type {
  CallableName,
  CancelScheduledMessageResult,
  Platform,
  Recurrence,
  RequestOf,
  ResponseOf,
  ScheduledMessageItem,
} from "./generated/api.js";
import { createMessageStore, type MessageStore, type MessagesListener, type StoredMessage } from "./messages.js";
import { createOutbox, type Outbox, type OutboxMessage } from "./outbox.js";
import { createPersistence, type Persistence } from "./persistence.js";
import { createCalls, DEFAULT_RETRY, type Calls, type RetryPolicy } from "./retry.js";
import { createSignals, type Signals } from "./signals.js";
import { memoryStorage, type StorageAdapter } from "./storage.js";
import { ulid } from "./ulid.js";
import { buildChatView, createSnapshotStore, type ChatView, type ClientSnapshot, type SnapshotStore } from "./store.js";

export type { StoredMessage } from "./messages.js";
export type { OutboxMessage } from "./outbox.js";
export { DEFAULT_RETRY, type RetryPolicy } from "./retry.js";
export { TYPING_IDLE_MS, TYPING_THROTTLE_MS, type ChatUnread, type TypingUserState } from "./signals.js";
export type { ChatMessage, ChatView, ClientSnapshot, MessageState } from "./store.js";

export interface ClientOptions {
  /** The signed-in user's uid (the Firestore and Functions instances carry their auth). */
  readonly userId: string;
  readonly firestore: Firestore;
  /** How callables are called; default: the Firebase SDK's httpsCallable on `functions`. */
  readonly invoker: Invoker;
  /** Default: memory (nothing survives the process). */
  readonly storage?: StorageAdapter;
  /** Default: always online. */
  readonly connectivity?: Connectivity;
  /** Default: one made once and kept in the storage. */
  readonly deviceId?: string;
  readonly platform?: Platform;
  readonly appVersion?: string;
  readonly retry?: Partial<RetryPolicy>;
  /** Names for typingText (default: the sender names stored messages carry, else the uid). */
  readonly displayName?: (userId: string) => string | undefined;
  /** Errors no caller awaits (a listener refused, a background call that gave up). */
  readonly onError?: (error: unknown) => void;
  /**
   * How long messages from the live listener wait to be acknowledged together (default
   * 300 ms): a burst costs one pack427_ackMessages call. They are stored (and handed to
   * onMessagesReceived) at once; sync pages are acknowledged as each is stored.
   */
  readonly ackDelayMs?: number;
  /** Resolves once the SDK is signed in as userId; nothing goes on the network before. */
  readonly authReady?: () => Promise<void>;
}

export interface AppClientOptions extends Omit<ClientOptions, "firestore" | "invoker" | "authReady"> {
  readonly invoker?: Invoker;
  /** The functions' region (default us-central1). */
  readonly region?: string;
}

/** A client on a Firebase app: its Firestore, and its Functions in `region`. */
export function createClient(app: FirebaseApp, options: AppClientOptions): Pack427Client {
  const invoker = options.invoker ?? firebaseInvoker(getFunctions(app, options.region ?? "us-central1"));
  const auth = getAuth(app);
  const authReady = () => new Promise<void>((resolve) => {
    let done = false;
    const unsubscribe = onAuthStateChanged(auth, (user) => {
      if (user?.uid !== options.userId || done) return;
      done = true;
      resolve();
      queueMicrotask(() => unsubscribe());
    });
  });
  return new Pack427Client({ ...options, firestore: getFirestore(app), invoker, authReady });
}

export class Pack427Client {
  readonly userId: string;
  readonly firestore: Firestore;
  private readonly connectivity: Connectivity;
  private readonly options: ClientOptions;
  private readonly calls: Calls;
  private readonly persistence: Persistence;
  private readonly messages: MessageStore;
  private readonly outbox: Outbox;
  private readonly delivery: Delivery;
  private readonly signals: Signals;
  private readonly store: SnapshotStore;

  private loadPromise: Promise<void> | null = null;
  private loaded = false;
  private started = false;
  private disposed = false;
  /** What the connectivity source says; isOnline also needs the engine to answer. */
  private online: boolean;
  private connectivityUnsub: (() => void) | null = null;

  constructor(options: ClientOptions) {
    this.options = options;
    this.userId = options.userId;
    this.firestore = options.firestore;
    this.connectivity = options.connectivity ?? alwaysOnline();
    this.online = this.connectivity.isOnline();
    const shared = {
      userId: options.userId,
      options,
      firestore: options.firestore,
      load: () => this.load(),
      isDisposed: () => this.disposed,
      isConnected: () => this.online,
      canWork: () => this.canWork(),
      changed: () => this.changed(),
      report: (error: unknown) => this.report(error),
    };
    this.calls = createCalls(typedCall(options.invoker), { ...DEFAULT_RETRY, ...options.retry }, shared);
    this.persistence = createPersistence(options.storage ?? memoryStorage(), `pack427/${options.userId}`, (key) => this.persisted(key));
    this.messages = createMessageStore((key) => this.persistence.markDirty(key));
    const context: ClientContext = { ...shared, calls: this.calls, persistence: this.persistence, messages: this.messages };
    this.outbox = createOutbox(context);
    this.signals = createSignals(context);
    this.delivery = createDelivery(context, {
      onHead: (data) => this.signals.applyHead(data),
      restartLive: () => this.startLive(),
    });
    this.store = createSnapshotStore({
      snapshot: () => {
        const unread = this.signals.unread;
        return {
          ready: this.loaded,
          isOnline: this.isOnline,
          isSyncing: this.delivery.isSyncing,
          outbox: [...this.outbox.messages],
          unread: { ...unread },
          // The head's chats and the parked ones' total (the head's parkedUnread): exact whatever the
          // parked chats' listener has shown yet.
          totalUnread: this.signals.headUnread + this.signals.parkedUnread,
          typing: { ...this.signals.typing },
        };
      },
      chatView: (chatId) => buildChatView({
        userId: this.userId,
        chatId,
        stored: this.messages.chat(chatId),
        readUpTo: this.signals.unread[chatId]?.readUpTo ?? null,
        receipts: this.signals.receiptsOf(chatId),
        deliveredUpTo: this.signals.deliveredUpToOf(chatId),
        outbox: this.outbox.messages,
        isOnline: this.isOnline,
        isSyncing: this.delivery.isSyncing,
      }),
    });
  }

  // ---------------------------------------------------------------- state

  /** Subscribe to changes of getSnapshot() (the useSyncExternalStore contract). */
  readonly subscribe = (listener: () => void): (() => void) => this.store.subscribe(listener);

  readonly getSnapshot = (): ClientSnapshot => this.store.getSnapshot();

  /** Called with every batch of messages new to this device, once stored. */
  onMessagesReceived(listener: MessagesListener): () => void {
    return this.delivery.onMessagesReceived(listener);
  }

  /** Called each time a sync reached the end of the inbox. */
  onSyncComplete(listener: () => void): () => void {
    return this.delivery.onSyncComplete(listener);
  }

  get deviceId(): string {
    return this.delivery.deviceId;
  }

  get isOnline(): boolean {
    return this.online && this.calls.reachable;
  }

  /** Messages stored on this device, oldest first (one chat, or all). */
  storedMessages(chatId?: string): readonly StoredMessage[] {
    if (chatId !== undefined) return [...this.messages.chat(chatId)];
    return this.messages.all();
  }

  /** The chat's messages with their states, the queued and the failed ones last; stable between changes. */
  chatView(chatId: string): ChatView {
    return this.store.chatView(chatId);
  }

  private changed(): void {
    if (this.disposed) return;
    this.store.changed();
  }

  private report(error: unknown): void {
    if (this.disposed) return;
    this.options.onError?.(error);
  }

  // ---------------------------------------------------------------- life

  /** Load the storage; idempotent. */
  load(): Promise<void> {
    this.loadPromise ??= this.doLoad();
    return this.loadPromise;
  }

  private async doLoad(): Promise<void> {
    const [outbox, sync, chatIds] = await Promise.all([
      this.persistence.read<OutboxMessage[]>("outbox"),
      this.persistence.read<SyncState>("sync"),
      this.persistence.read<string[]>("chats"),
    ]);
    this.outbox.restore(outbox ?? []);
    this.delivery.restore(sync);
    for (const chatId of chatIds ?? []) {
      this.messages.restore(chatId, (await this.persistence.read<StoredMessage[]>(`chat/${chatId}`)) ?? []);
    }
    if (!sync) this.persistence.markDirty("sync");
    await this.persistence.persist();
    this.loaded = true;
    this.changed();
  }

  /** A persisted key's current value. */
  private persisted(key: string): unknown {
    if (key === "outbox") return this.outbox.messages;
    if (key === "sync") return this.delivery.state;
    if (key === "chats") return this.messages.chatIds();
    return this.messages.chat(key.slice("chat/".length));
  }

  /** Load, then go online if the connectivity source says so: flush, listen, sync. Idempotent. */
  async start(): Promise<void> {
    if (this.started || this.disposed) return;
    this.started = true;
    await this.load();
    // The callables and listeners carry the user's ID token: wait until the SDK has it.
    await this.options.authReady?.();
    if (this.disposed) return;
    this.connectivityUnsub = this.connectivity.subscribe((online) => this.setOnline(online));
    this.online = this.connectivity.isOnline();
    this.changed();
    if (this.online) this.goOnline();
  }

  /** Remove every listener and timer; pending work stops (the outbox stays stored). */
  dispose(): void {
    if (this.disposed) return;
    this.stopLive();
    this.signals.dispose();
    this.connectivityUnsub?.();
    this.disposed = true;
    this.store.close();
    this.delivery.dispose();
    this.calls.wake();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private setOnline(online: boolean): void {
    if (this.disposed || online === this.online) return;
    this.online = online;
    this.calls.reachable = true;
    this.calls.wake();
    if (online) {
      this.goOnline();
    } else {
      this.stopLive();
    }
    this.changed();
  }

  private canWork(): boolean {
    return this.started && this.loaded && !this.disposed && this.online;
  }

  private goOnline(): void {
    void this.flush();
    this.startLive();
  }

  /** The live set: the inbox head and inbox (with a catch-up sync), and the watched chats. */
  private startLive(): void {
    this.stopLive();
    this.delivery.listen();
    this.signals.resume();
  }

  private stopLive(): void {
    this.delivery.stopListening();
    this.signals.pause();
  }

  // ---------------------------------------------------------------- sending

  /**
   * Write a message: stored in the outbox (resolves once stored), then sent when online.
   * Returns it as stored (queued).
   */
  send(chatId: string, text: string | null, options: { contentRef?: string } = {}): Promise<OutboxMessage> {
    return this.outbox.send(chatId, text, options);
  }

  /** Queue the failed messages (of one chat, or all) again with their clientMessageIds; how many. */
  retryFailed(chatId?: string): Promise<number> {
    return this.outbox.retryFailed(chatId);
  }

  /** Send the outbox, oldest first, until it is empty or the device is offline. */
  flush(): Promise<void> {
    return this.outbox.flush();
  }

  // ---------------------------------------------------------------- receiving

  /**
   * Everything delivered since the stored cursor, page by page until the end of the
   * inbox; each page stored with the cursor after it, then acknowledged. Resolves with
   * the messages new to this device.
   */
  syncMessages(): Promise<readonly StoredMessage[]> {
    return this.delivery.syncMessages();
  }

  /**
   * The seed's forced resync: the chat's whole record (own messages included) from
   * pack427_resyncChat, stored; and the receipt of the chat's last message from
   * pack427_getChatList. Resolves with the messages new to this device.
   */
  async refreshChat(chatId: string): Promise<readonly StoredMessage[]> {
    const fresh = await this.delivery.resyncChat(chatId);
    await this.signals.refreshReceipts(chatId);
    return fresh;
  }

  // ---------------------------------------------------------------- signals

  /** Listen to the chat's read receipts (own messages become read); returns the release. */
  watchReceipts(chatId: string): () => void {
    return this.signals.watchReceipts(chatId);
  }

  /** Listen to who is typing in the chat; returns the release. */
  watchTyping(chatId: string): () => void {
    return this.signals.watchTyping(chatId);
  }

  /** A keystroke: at most one call per 3 s while typing; stops by itself after 5 s without one. */
  startTyping(chatId: string): void {
    this.signals.startTyping(chatId);
  }

  /** The user stopped typing (no call if they were not). */
  stopTyping(chatId: string): void {
    this.signals.stopTyping(chatId);
  }

  /** Everything up to `messageId` of the chat is read (on every device: the head moves). */
  markAsRead(chatId: string, messageId: string): Promise<number> {
    return this.signals.markAsRead(chatId, messageId);
  }

  /** Mark the chat read up to its newest message (the inbox head's, else the newest stored from others). */
  markChatAsRead(chatId: string): Promise<number> {
    return this.signals.markChatAsRead(chatId);
  }

  /** Unread counts (chats with any) from pack427_getUnreadCounts (the head listener keeps them current anyway). */
  refreshUnreadCounts(): Promise<Readonly<Record<string, number>>> {
    return this.signals.refreshUnreadCounts();
  }

  /**
   * Schedule a message for `deliverAt` (Unix ms, at most 30 days ahead); with `recurrence`
   * ({rrule, timeZone}: an RFC 5545 rule of the engine's subset, README "Recurring messages"),
   * a recurring series whose first occurrence is the rule's first instance at or after
   * deliverAt. Needs the network (not kept in the outbox); repeated with the same
   * clientMessageId, so scheduled once. Resolves with the scheduled id.
   */
  async scheduleMessage(
    chatId: string,
    text: string,
    options: { deliverAt: number; recurrence?: Recurrence; clientMessageId?: string },
  ): Promise<string> {
    const data = { chatId, clientMessageId: options.clientMessageId ?? ulid(), text, deliverAt: options.deliverAt };
    const result = await this.calls.callWithRetries(
      "pack427_sendMessage",
      options.recurrence ? { ...data, recurrence: options.recurrence } : data,
    );
    return result.messageId;
  }

  /**
   * Cancel a scheduled message or a whole series; with `occurrenceAt` (Unix ms: a series'
   * nextOccurrenceAt or one of its upcoming) that occurrence only, the series goes on.
   */
  cancelScheduledMessage(scheduledId: string, occurrenceAt?: number): Promise<CancelScheduledMessageResult> {
    return this.calls.callWithRetries(
      "pack427_cancelScheduledMessage",
      occurrenceAt === undefined ? { scheduledId } : { scheduledId, occurrenceAt },
    );
  }

  /** The user's scheduled messages and series (scheduled or stopped), soonest first. */
  async scheduledMessages(): Promise<ScheduledMessageItem[]> {
    return (await this.calls.callWithRetries("pack427_listScheduledMessages", {})).messages;
  }

  /** Any other callable, with the client's retries (listScheduledMessages, recalculateUnreadCounters...). */
  request<N extends CallableName>(name: N, data: RequestOf<N>): Promise<ResponseOf<N>> {
    return this.calls.callWithRetries(name, data);
  }
}

export { Pack427Error, NoAnswerError };
