// One user's chat on one device: the outbox, live delivery, sync and the signals.
//
// Sending: send() gives a message its clientMessageId (a ULID, the engine's
// idempotency key) and stores it in the outbox before anything goes on the
// network. The outbox is sent oldest first, one at a time, with the same
// clientMessageId on every retry (the engine answers a repeat with the first
// result), so a new client on the same storage (the app was killed) resumes it.
//
// Receiving: a Firestore listener on the user's own inbox (entries after the
// inbox head's seq when the device came online), plus pack427_syncMessages from
// the stored cursor on start and on every reconnect, so nothing that arrived
// while offline is skipped. Each message is stored, then acknowledged;
// messages are de-duplicated by id; per chat they are kept in message (ULID) order.
//
// Signals: the inbox head (unread counts, read positions), the chat's read
// receipts and the typing events naming the user, each a listener under
// firestore.rules with the user's own auth.
import type { FirebaseApp } from "firebase/app";
import {
  collection,
  collectionGroup,
  doc,
  getFirestore,
  onSnapshot,
  orderBy,
  query,
  where,
  Timestamp,
  type DocumentData,
  type Firestore,
  type Unsubscribe,
} from "firebase/firestore";
import { getAuth, onAuthStateChanged } from "firebase/auth";
import { getFunctions } from "firebase/functions";
import { firebaseInvoker, typedCall, type Call, type Invoker } from "./callables.js";
import { alwaysOnline, type Connectivity } from "./connectivity.js";
import { classify, NoAnswerError, Pack427Error } from "./errors.js";
import type { CallableName, Platform, RequestOf, ResponseOf, SyncedMessage } from "./generated/api.js";
import { memoryStorage, type StorageAdapter } from "./storage.js";
import { ulid } from "./ulid.js";

/** What a message in a chat is, as the user sees it. */
export type MessageState = "queued" | "sent" | "delivered" | "read" | "failed";

/** A message written on this device and not accepted by the engine yet (queued), or refused (failed). */
export interface OutboxMessage {
  readonly clientMessageId: string;
  readonly chatId: string;
  readonly text: string | null;
  readonly contentRef: string | null;
  /** When it was written (Unix ms). */
  readonly createdAt: number;
  readonly status: "queued" | "failed";
  /** Calls made for it so far (answered or not). */
  readonly attempts: number;
  readonly lastError: string | null;
}

/** A message stored on this device: received, synced, resynced, or the user's own once accepted. */
export interface StoredMessage {
  readonly messageId: string;
  readonly clientMessageId: string | null;
  readonly chatId: string;
  readonly senderId: string;
  readonly senderName: string | null;
  readonly text: string | null;
  readonly contentRef: string | null;
  readonly createdAt: number;
  readonly deliveredAt: number | null;
  readonly systemNudge: boolean;
}

/** A chat's message with its state. `id` is the messageId, or the clientMessageId until accepted. */
export interface ChatMessage {
  readonly id: string;
  readonly messageId: string | null;
  readonly clientMessageId: string | null;
  readonly chatId: string;
  readonly senderId: string;
  readonly senderName: string | null;
  readonly text: string | null;
  readonly contentRef: string | null;
  readonly createdAt: number;
  readonly deliveredAt: number | null;
  readonly systemNudge: boolean;
  readonly own: boolean;
  readonly state: MessageState;
  readonly error: string | null;
}

/** What the inbox head says of one chat. */
export interface ChatUnread {
  readonly unread: number;
  readonly readUpTo: string | null;
  readonly last: string | null;
}

export interface TypingUserState {
  readonly userId: string;
  readonly name: string;
  /** Unix ms; the indicator goes at this time even if no stop arrives. */
  readonly expiresAt: number;
}

export interface RetryPolicy {
  /** Tries per message (or call) on retryable errors before it fails (default 10). */
  readonly maxAttempts: number;
  /** The first back-off (default 200 ms), doubled after each failure... */
  readonly baseDelayMs: number;
  /** ...up to this (default 10 s). */
  readonly maxDelayMs: number;
  /** The longest resource-exhausted wait honoured (default 65 s); a longer one fails the message. */
  readonly maxRateLimitWaitMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 10,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  maxRateLimitWaitMs: 65_000,
};

export const TYPING_THROTTLE_MS = 3_000;
export const TYPING_IDLE_MS = 5_000;
const ACK_BATCH = 500;

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

interface SyncState {
  deviceId: string;
  cursor: string | null;
  unacked: string[];
  registered: boolean;
}

/** One snapshot of everything the hooks render; a new object whenever something changed. */
export interface ClientSnapshot {
  readonly ready: boolean;
  readonly isOnline: boolean;
  readonly isSyncing: boolean;
  readonly outbox: readonly OutboxMessage[];
  readonly unread: Readonly<Record<string, ChatUnread>>;
  readonly totalUnread: number;
  readonly typing: Readonly<Record<string, readonly TypingUserState[]>>;
  readonly version: number;
}

export interface ChatView {
  readonly messages: readonly ChatMessage[];
  readonly queuedMessages: readonly OutboxMessage[];
  readonly failedMessagesCount: number;
  readonly isOnline: boolean;
  readonly isSyncing: boolean;
}

type MessagesListener = (messages: readonly StoredMessage[]) => void;

function millis(value: unknown): number | null {
  if (value instanceof Timestamp) return Math.floor(value.toMillis());
  if (typeof value === "number") return value;
  if (value instanceof Date) return value.getTime();
  if (typeof value === "string") {
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed;
  }
  return null;
}

function str(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

function fromWire(m: SyncedMessage): StoredMessage {
  return {
    messageId: m.messageId,
    clientMessageId: null,
    chatId: m.chatId,
    senderId: m.senderId,
    senderName: m.senderName ?? null,
    text: m.text ?? null,
    contentRef: m.contentRef === "" ? null : m.contentRef,
    createdAt: m.createdAt,
    deliveredAt: m.deliveredAt ?? null,
    systemNudge: m.systemNudge === true,
  };
}

function fromInboxEntry(data: DocumentData, id: string): StoredMessage | null {
  const chatId = str(data["chatId"]);
  const senderId = str(data["senderId"]);
  if (chatId === null || senderId === null) return null;
  const contentRef = str(data["contentRef"]);
  return {
    messageId: str(data["messageId"]) ?? id,
    clientMessageId: null,
    chatId,
    senderId,
    senderName: str(data["senderName"]),
    text: str(data["text"]),
    contentRef: contentRef === "" ? null : contentRef,
    createdAt: millis(data["createdAt"]) ?? 0,
    deliveredAt: millis(data["deliveredAt"]),
    systemNudge: data["systemNudge"] === true,
  };
}

function insertSorted(list: StoredMessage[], message: StoredMessage): void {
  let i = list.length;
  while (i > 0 && (list[i - 1]?.messageId ?? "") > message.messageId) i -= 1;
  list.splice(i, 0, message);
}

export class Pack427Client {
  readonly userId: string;
  readonly firestore: Firestore;
  private readonly call: Call;
  private readonly storage: StorageAdapter;
  private readonly connectivity: Connectivity;
  private readonly retry: RetryPolicy;
  private readonly options: ClientOptions;
  private readonly prefix: string;

  // persisted
  private outbox: OutboxMessage[] = [];
  private chats = new Map<string, StoredMessage[]>();
  private sync: SyncState = { deviceId: "", cursor: null, unacked: [], registered: false };
  private known = new Set<string>();

  // live
  private loadPromise: Promise<void> | null = null;
  private loaded = false;
  private started = false;
  private disposed = false;
  private online: boolean;
  private reachable = true;
  private syncing = 0;
  private unread: Record<string, ChatUnread> = {};
  private receipts = new Map<string, Map<string, string>>();
  private deliveredUpTo = new Map<string, string>();
  private typing: Record<string, TypingUserState[]> = {};
  private typingRaw = new Map<string, Map<string, number>>();
  private typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private ownTyping = new Map<string, { lastSent: number; idle: ReturnType<typeof setTimeout> }>();
  private liveUnsubs: Unsubscribe[] = [];
  private watchedReceipts = new Map<string, { count: number; unsub: Unsubscribe | null }>();
  private watchedTyping = new Map<string, { count: number; unsub: Unsubscribe | null }>();
  private liveGeneration = 0;
  private connectivityUnsub: (() => void) | null = null;
  private flushing: Promise<void> | null = null;
  private flushAgain = false;
  private syncPromise: Promise<readonly StoredMessage[]> | null = null;
  private syncAgain = false;
  private acking: Promise<void> | null = null;
  private wakers = new Set<() => void>();
  private persistChain: Promise<void> = Promise.resolve();
  private dirty = new Set<string>();

  private listeners = new Set<() => void>();
  private messageListeners = new Set<MessagesListener>();
  private syncListeners = new Set<() => void>();
  private version = 0;
  private snapshot: ClientSnapshot;
  private chatViews = new Map<string, { version: number; view: ChatView }>();

  constructor(options: ClientOptions) {
    this.options = options;
    this.userId = options.userId;
    this.firestore = options.firestore;
    this.call = typedCall(options.invoker);
    this.storage = options.storage ?? memoryStorage();
    this.connectivity = options.connectivity ?? alwaysOnline();
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.prefix = `pack427/${options.userId}`;
    this.online = this.connectivity.isOnline();
    this.snapshot = this.makeSnapshot();
  }

  // ---------------------------------------------------------------- state

  /** Subscribe to changes of getSnapshot() (the useSyncExternalStore contract). */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  readonly getSnapshot = (): ClientSnapshot => this.snapshot;

  /** Called with every batch of messages new to this device, once stored. */
  onMessagesReceived(listener: MessagesListener): () => void {
    this.messageListeners.add(listener);
    return () => {
      this.messageListeners.delete(listener);
    };
  }

  /** Called each time a sync reached the end of the inbox. */
  onSyncComplete(listener: () => void): () => void {
    this.syncListeners.add(listener);
    return () => {
      this.syncListeners.delete(listener);
    };
  }

  get deviceId(): string {
    return this.sync.deviceId;
  }

  get isOnline(): boolean {
    return this.online && this.reachable;
  }

  /** Messages stored on this device, oldest first (one chat, or all). */
  storedMessages(chatId?: string): readonly StoredMessage[] {
    if (chatId !== undefined) return [...(this.chats.get(chatId) ?? [])];
    return [...this.chats.values()].flat();
  }

  /** The chat's messages with their states, the queued and the failed ones last; stable between changes. */
  chatView(chatId: string): ChatView {
    const cached = this.chatViews.get(chatId);
    if (cached && cached.version === this.version) return cached.view;
    const view = this.buildChatView(chatId);
    if (cached && sameView(cached.view, view)) {
      cached.version = this.version;
      return cached.view;
    }
    this.chatViews.set(chatId, { version: this.version, view });
    return view;
  }

  private buildChatView(chatId: string): ChatView {
    const readUpTo = this.unread[chatId]?.readUpTo ?? null;
    const others = this.receipts.get(chatId);
    const delivered = this.deliveredUpTo.get(chatId) ?? null;
    const messages: ChatMessage[] = (this.chats.get(chatId) ?? []).map((m) => {
      const own = m.senderId === this.userId;
      let state: MessageState;
      if (own) {
        const readByOther = others ? [...others.entries()].some(([uid, upTo]) => uid !== this.userId && upTo >= m.messageId) : false;
        state = readByOther ? "read" : delivered !== null && delivered >= m.messageId ? "delivered" : "sent";
      } else {
        state = readUpTo !== null && readUpTo >= m.messageId ? "read" : "delivered";
      }
      return { ...m, id: m.messageId, own, state, error: null };
    });
    const pending = this.outbox.filter((o) => o.chatId === chatId);
    for (const o of pending) {
      messages.push({
        id: o.clientMessageId,
        messageId: null,
        clientMessageId: o.clientMessageId,
        chatId,
        senderId: this.userId,
        senderName: null,
        text: o.text,
        contentRef: o.contentRef,
        createdAt: o.createdAt,
        deliveredAt: null,
        systemNudge: false,
        own: true,
        state: o.status,
        error: o.lastError,
      });
    }
    return {
      messages,
      queuedMessages: pending.filter((o) => o.status === "queued"),
      failedMessagesCount: pending.filter((o) => o.status === "failed").length,
      isOnline: this.isOnline,
      isSyncing: this.syncing > 0,
    };
  }

  private makeSnapshot(): ClientSnapshot {
    return {
      ready: this.loaded,
      isOnline: this.isOnline,
      isSyncing: this.syncing > 0,
      outbox: [...this.outbox],
      unread: { ...this.unread },
      totalUnread: Object.values(this.unread).reduce((sum, c) => sum + c.unread, 0),
      typing: { ...this.typing },
      version: this.version,
    };
  }

  private changed(): void {
    if (this.disposed) return;
    this.version += 1;
    this.snapshot = this.makeSnapshot();
    for (const listener of [...this.listeners]) listener();
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
      this.read<OutboxMessage[]>("outbox"),
      this.read<SyncState>("sync"),
      this.read<string[]>("chats"),
    ]);
    this.outbox = outbox ?? [];
    this.sync = sync ?? { deviceId: this.options.deviceId ?? ulid(), cursor: null, unacked: [], registered: false };
    if (this.options.deviceId !== undefined && this.sync.deviceId !== this.options.deviceId) {
      this.sync = { deviceId: this.options.deviceId, cursor: null, unacked: [], registered: false };
    }
    this.sync.registered = false; // registerDevice once per client (it records appVersion)
    for (const chatId of chatIds ?? []) {
      const list = (await this.read<StoredMessage[]>(`chat/${chatId}`)) ?? [];
      this.chats.set(chatId, list);
      for (const m of list) this.known.add(m.messageId);
    }
    if (!sync) this.markDirty("sync");
    await this.persist();
    this.loaded = true;
    this.changed();
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
    for (const w of this.watchedReceipts.values()) w.unsub?.();
    for (const w of this.watchedTyping.values()) w.unsub?.();
    this.watchedReceipts.clear();
    this.watchedTyping.clear();
    for (const t of this.typingTimers.values()) clearTimeout(t);
    for (const t of this.ownTyping.values()) clearTimeout(t.idle);
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.connectivityUnsub?.();
    this.disposed = true;
    this.listeners.clear();
    this.messageListeners.clear();
    this.syncListeners.clear();
    this.wake();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private setOnline(online: boolean): void {
    if (this.disposed || online === this.online) return;
    this.online = online;
    this.reachable = true;
    this.wake();
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

  // ---------------------------------------------------------------- storage

  private async read<T>(key: string): Promise<T | null> {
    const raw = await this.storage.getItem(`${this.prefix}/${key}`);
    return raw === null ? null : (JSON.parse(raw) as T);
  }

  private markDirty(key: string): void {
    this.dirty.add(key);
  }

  /** Write what changed, in order: chats first, then the sync position and the outbox. */
  private persist(): Promise<void> {
    this.persistChain = this.persistChain.then(async () => {
      const keys = [...this.dirty].sort((a, b) => rank(a) - rank(b));
      this.dirty.clear();
      for (const key of keys) {
        const value =
          key === "outbox" ? this.outbox : key === "sync" ? this.sync : key === "chats" ? [...this.chats.keys()]
          : this.chats.get(key.slice("chat/".length)) ?? [];
        await this.storage.setItem(`${this.prefix}/${key}`, JSON.stringify(value));
      }
    });
    return this.persistChain;
  }

  // ---------------------------------------------------------------- waiting

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  /** Wait `ms`, or less if woken (connectivity changed, disposed). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }

  private delay(failures: number): number {
    return Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** Math.max(0, failures - 1));
  }

  private async invoke<N extends CallableName>(name: N, data: RequestOf<N>): Promise<ResponseOf<N>> {
    try {
      const result = await this.call(name, data);
      if (!this.reachable) {
        this.reachable = true;
        this.changed();
      }
      return result;
    } catch (error) {
      const reachable = !(error instanceof NoAnswerError);
      if (reachable !== this.reachable) {
        this.reachable = reachable;
        this.changed();
      }
      throw error;
    }
  }

  /**
   * An idempotent call, repeated after back-off: without an answer while online (as
   * long as `persistent`, else maxAttempts times), on retryable errors maxAttempts times.
   */
  private async callWithRetries<N extends CallableName>(
    name: N,
    data: RequestOf<N>,
    persistent = false,
  ): Promise<ResponseOf<N>> {
    let failures = 0;
    for (;;) {
      if (this.disposed) throw new NoAnswerError("client disposed");
      if (persistent && !this.online) throw new NoAnswerError("offline");
      try {
        return await this.invoke(name, data);
      } catch (error) {
        const failure = classify(error);
        if (failure.kind === "refused") throw error;
        if (failure.kind === "rate-limited") {
          await this.pause(Math.min(failure.retryAfterMs ?? this.retry.maxDelayMs, this.retry.maxRateLimitWaitMs));
          continue;
        }
        failures += 1;
        if ((failure.kind === "retryable" || !persistent) && failures >= this.retry.maxAttempts) throw error;
        await this.pause(this.delay(failures));
      }
    }
  }

  // ---------------------------------------------------------------- sending

  /**
   * Write a message: stored in the outbox (resolves once stored), then sent when online.
   * Returns it as stored (queued).
   */
  async send(chatId: string, text: string | null, options: { contentRef?: string } = {}): Promise<OutboxMessage> {
    await this.load();
    const message: OutboxMessage = {
      clientMessageId: ulid(),
      chatId,
      text,
      contentRef: options.contentRef ?? null,
      createdAt: Date.now(),
      status: "queued",
      attempts: 0,
      lastError: null,
    };
    this.outbox.push(message);
    this.markDirty("outbox");
    await this.persist();
    this.changed();
    void this.flush();
    return message;
  }

  /** Queue the failed messages (of one chat, or all) again with their clientMessageIds; how many. */
  async retryFailed(chatId?: string): Promise<number> {
    await this.load();
    let count = 0;
    this.outbox = this.outbox.map((o) => {
      if (o.status !== "failed" || (chatId !== undefined && o.chatId !== chatId)) return o;
      count += 1;
      return { ...o, status: "queued", attempts: 0 };
    });
    if (count) {
      this.markDirty("outbox");
      await this.persist();
      this.changed();
      void this.flush();
    }
    return count;
  }

  /** Send the outbox, oldest first, until it is empty or the device is offline. */
  flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      await null; // this.flushing is assigned before the body can finish
      try {
        do {
          this.flushAgain = false;
          while (this.canWork()) {
            const next = this.outbox.find((o) => o.status === "queued");
            if (!next) break;
            if (!(await this.sendOne(next))) break;
          }
        } while (this.flushAgain && this.canWork());
      } catch (error) {
        this.report(error);
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  private updateOutbox(clientMessageId: string, change: Partial<OutboxMessage>): void {
    this.outbox = this.outbox.map((o) => (o.clientMessageId === clientMessageId ? { ...o, ...change } : o));
    this.markDirty("outbox");
  }

  /** One message until accepted or failed (true), or until the device is offline (false). */
  private async sendOne(message: OutboxMessage): Promise<boolean> {
    const data: RequestOf<"pack427_sendMessage"> = { chatId: message.chatId, clientMessageId: message.clientMessageId };
    if (message.text !== null) data.text = message.text;
    if (message.contentRef !== null) data.contentRef = message.contentRef;
    let serverFailures = 0;
    let noAnswers = 0;
    let attempts = message.attempts;
    for (;;) {
      if (!this.canWork()) return false;
      attempts += 1;
      let result: ResponseOf<"pack427_sendMessage">;
      try {
        result = await this.invoke("pack427_sendMessage", data);
      } catch (error) {
        const failure = classify(error);
        const text = error instanceof Error ? error.message : String(error);
        if (failure.kind === "no-answer") {
          // The engine may or may not have it; the same clientMessageId makes the repeat safe.
          noAnswers += 1;
          this.updateOutbox(message.clientMessageId, { attempts, lastError: text });
          await this.pause(this.delay(noAnswers));
          continue;
        }
        if (failure.kind === "rate-limited") {
          const wait = failure.retryAfterMs ?? this.retry.maxDelayMs;
          if (wait <= this.retry.maxRateLimitWaitMs) {
            await this.pause(wait);
            continue;
          }
        } else if (failure.kind === "retryable") {
          serverFailures += 1;
          if (serverFailures < this.retry.maxAttempts) {
            this.updateOutbox(message.clientMessageId, { attempts, lastError: text });
            await this.pause(this.delay(serverFailures));
            continue;
          }
        }
        this.updateOutbox(message.clientMessageId, { attempts, lastError: text, status: "failed" });
        await this.persist();
        this.changed();
        return true;
      }
      if (typeof result !== "object" || result === null || typeof result.messageId !== "string" || !result.messageId) {
        // Not the send's answer (a proxy's page, a misrouted call): not accepted; try again, bounded.
        serverFailures += 1;
        const failed = serverFailures >= this.retry.maxAttempts;
        this.updateOutbox(message.clientMessageId, { attempts, lastError: "unexpected answer", ...(failed ? { status: "failed" } : {}) });
        if (failed) {
          await this.persist();
          this.changed();
          return true;
        }
        await this.pause(this.delay(serverFailures));
        continue;
      }
      // Accepted: the message is stored as the user's own (chat first), then leaves the outbox.
      this.store([{
        messageId: result.messageId,
        clientMessageId: message.clientMessageId,
        chatId: message.chatId,
        senderId: this.userId,
        senderName: null,
        text: message.text,
        contentRef: message.contentRef,
        createdAt: message.createdAt,
        deliveredAt: null,
        systemNudge: false,
      }]);
      this.outbox = this.outbox.filter((o) => o.clientMessageId !== message.clientMessageId);
      this.markDirty("outbox");
      await this.persist();
      this.changed();
      return true;
    }
  }

  // ---------------------------------------------------------------- receiving

  /** Add messages not stored yet (in memory; persist() writes them). Returns the new ones. */
  private store(messages: readonly StoredMessage[]): StoredMessage[] {
    const fresh: StoredMessage[] = [];
    for (const m of messages) {
      if (this.known.has(m.messageId)) continue;
      this.known.add(m.messageId);
      let list = this.chats.get(m.chatId);
      if (!list) {
        list = [];
        this.chats.set(m.chatId, list);
        this.markDirty("chats");
      }
      insertSorted(list, m);
      this.markDirty(`chat/${m.chatId}`);
      fresh.push(m);
    }
    return fresh;
  }

  /** Store inbox messages (and the cursor after them), then tell the listeners, then acknowledge. */
  private async ingest(messages: readonly StoredMessage[], cursor?: string, ackNow = true): Promise<StoredMessage[]> {
    const fresh = this.store(messages);
    const unacked = new Set(this.sync.unacked);
    for (const m of fresh) unacked.add(m.messageId);
    this.sync.unacked = [...unacked];
    if (cursor !== undefined) this.sync.cursor = cursor;
    this.markDirty("sync");
    await this.persist();
    if (fresh.length) {
      this.changed();
      if (this.catchUps > 0) this.unannounced.push(...fresh);
      else this.announce(fresh);
    }
    if (ackNow) void this.ackStored();
    else this.scheduleAck();
    return fresh;
  }

  /** Catch-ups (the sync after coming online) under way: new messages are announced after them. */
  private catchUps = 0;
  private unannounced: StoredMessage[] = [];

  private announce(messages: readonly StoredMessage[]): void {
    for (const listener of [...this.messageListeners]) {
      try {
        listener(messages);
      } catch (error) {
        this.report(error);
      }
    }
  }

  /**
   * The end of a catch-up: what it stored (sync pages, and what the live listener
   * saw meanwhile) is handed over in message order, so each chat's messages come in
   * order even when the pages and the listener overlapped or crossed.
   */
  private endCatchUp(): void {
    this.catchUps -= 1;
    if (this.catchUps > 0 || !this.unannounced.length) return;
    const messages = this.unannounced.sort((a, b) => (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0));
    this.unannounced = [];
    if (!this.disposed) this.announce(messages);
  }

  private ackTimer: ReturnType<typeof setTimeout> | null = null;

  private scheduleAck(): void {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      void this.ackStored();
    }, this.options.ackDelayMs ?? 300);
  }

  private ackStored(): Promise<void> {
    this.acking ??= (async () => {
      await null; // this.acking is assigned before the body can finish
      try {
        while (this.sync.unacked.length && this.canWork()) {
          const ids = this.sync.unacked.slice(0, ACK_BATCH);
          await this.callWithRetries("pack427_ackMessages", { messageIds: ids, deviceId: this.sync.deviceId }, true);
          const done = new Set(ids);
          this.sync.unacked = this.sync.unacked.filter((id) => !done.has(id));
          this.markDirty("sync");
          await this.persist();
        }
      } catch (error) {
        if (!(error instanceof NoAnswerError)) this.report(error);
      } finally {
        this.acking = null;
      }
    })();
    return this.acking;
  }

  /**
   * Everything delivered since the stored cursor, page by page until the end of the
   * inbox; each page stored with the cursor after it, then acknowledged. Resolves with
   * the messages new to this device.
   */
  syncMessages(): Promise<readonly StoredMessage[]> {
    if (this.syncPromise) {
      this.syncAgain = true;
      return this.syncPromise;
    }
    this.syncPromise = (async () => {
      await this.load();
      const fresh: StoredMessage[] = [];
      this.syncing += 1;
      this.changed();
      try {
        do {
          this.syncAgain = false;
          if (!this.sync.registered) {
            await this.callWithRetries("pack427_registerDevice", {
              deviceId: this.sync.deviceId,
              platform: this.options.platform ?? "web",
              appVersion: this.options.appVersion ?? "1",
            }, true);
            this.sync.registered = true;
          }
          for (;;) {
            const data: RequestOf<"pack427_syncMessages"> = { deviceId: this.sync.deviceId };
            // Without a cursor (a new device) the engine starts at the device's stored position:
            // the inbox's start, or after the last page it served. The live listener of a
            // device without a cursor covers the whole inbox (see startLive).
            if (this.sync.cursor !== null) data.cursor = this.sync.cursor;
            const page = await this.callWithRetries("pack427_syncMessages", data, true);
            fresh.push(...(await this.ingest(page.messages.map(fromWire), page.cursor)));
            if (!page.hasMore) break;
          }
        } while (this.syncAgain);
      } finally {
        this.syncing -= 1;
        this.syncPromise = null;
        this.changed();
      }
      for (const listener of [...this.syncListeners]) listener();
      return fresh;
    })();
    return this.syncPromise;
  }

  /**
   * The seed's forced resync: the chat's whole record (own messages included) from
   * pack427_resyncChat, stored; and the receipt of the chat's last message from
   * pack427_getChatList. Resolves with the messages new to this device.
   */
  async refreshChat(chatId: string): Promise<readonly StoredMessage[]> {
    await this.load();
    const fresh: StoredMessage[] = [];
    let cursor: string | null = null;
    for (;;) {
      const data: RequestOf<"pack427_resyncChat"> = { chatId };
      if (cursor !== null) data.cursor = cursor;
      const page = await this.callWithRetries("pack427_resyncChat", data);
      const added = this.store(page.messages.map(fromWire));
      await this.persist();
      if (added.length) {
        fresh.push(...added);
        this.changed();
        this.announce(added);
      }
      cursor = page.cursor;
      if (!page.hasMore || cursor === null) break;
    }
    await this.refreshReceipts(chatId);
    return fresh;
  }

  private async refreshReceipts(chatId: string): Promise<void> {
    let cursor: string | null = null;
    for (let pages = 0; pages < 20; pages += 1) {
      const data: RequestOf<"pack427_getChatList"> = { limit: 50 };
      if (cursor !== null) data.cursor = cursor;
      const list = await this.callWithRetries("pack427_getChatList", data);
      const item = list.chats.find((c) => c.chatId === chatId);
      if (item) {
        const statuses = Object.values(item.lastMessageStatus ?? {});
        if (item.lastMessage.senderId === this.userId && statuses.length &&
            statuses.every((s) => s === "delivered" || s === "read")) {
          this.deliveredUpTo.set(chatId, item.lastMessage.messageId);
          this.changed();
        }
        return;
      }
      cursor = list.cursor;
      if (!list.hasMore || cursor === null) return;
    }
  }

  // ---------------------------------------------------------------- listeners

  private liveFailures = 0;

  /** A listener of the live set failed (a rule refused, the token was not ready...): set it up again later. */
  private liveFailed(error: unknown, generation: number): void {
    this.report(error);
    if (generation !== this.liveGeneration || !this.canWork()) return;
    this.liveFailures += 1;
    setTimeout(() => {
      if (generation === this.liveGeneration && this.canWork()) this.startLive();
    }, Math.max(1_000, this.delay(this.liveFailures)));
  }

  private startLive(): void {
    this.stopLive();
    const generation = ++this.liveGeneration;
    const live = () => generation === this.liveGeneration && this.canWork();
    const db = this.firestore;
    let inboxStarted = false;
    const startInbox = (fromSeq: number) => {
      inboxStarted = true;
      // A device without a cursor listens from the inbox's start: its first sync page is
      // the one page no cursor can replay (the engine resumes from the last page it served).
      const from = this.sync.cursor === null ? 0 : fromSeq;
      const inbox = query(collection(db, "users", this.userId, "inbox"), where("seq", ">", from), orderBy("seq"));
      // Until the sync below has brought everything up to fromSeq, new messages are
      // stored at once and handed over at its end, in order.
      this.catchUps += 1;
      let caughtUp = false;
      const done = () => {
        if (caughtUp) return;
        caughtUp = true;
        this.endCatchUp();
      };
      this.liveUnsubs.push(() => done());
      this.liveUnsubs.push(onSnapshot(inbox, (snap) => {
        if (!live()) return;
        const added: StoredMessage[] = [];
        for (const change of snap.docChanges()) {
          if (change.type !== "added") continue;
          const m = fromInboxEntry(change.doc.data(), change.doc.id);
          if (m) added.push(m);
        }
        if (added.length) void this.ingest(added, undefined, false).catch((e: unknown) => this.report(e));
      }, (error) => this.liveFailed(error, generation)));
      // Everything up to fromSeq (and more) comes from the stored cursor.
      void this.syncMessages().catch((e: unknown) => {
        if (!(e instanceof NoAnswerError)) this.report(e);
      }).finally(done);
    };
    const head = doc(db, "users", this.userId, "inboxHead", "current");
    this.liveUnsubs.push(onSnapshot(head, { includeMetadataChanges: true }, (snap) => {
      if (!live()) return;
      // The inbox listener starts at the server's seq, not at a cached one: what
      // arrived while offline comes from the stored cursor (sync).
      if (snap.metadata.fromCache) return;
      this.liveFailures = 0;
      const data = snap.data() ?? {};
      const chats = (data["chats"] ?? {}) as Record<string, Record<string, unknown>>;
      const unread: Record<string, ChatUnread> = {};
      for (const [chatId, c] of Object.entries(chats)) {
        const count = c["unread"];
        unread[chatId] = {
          unread: typeof count === "number" && count > 0 ? count : 0,
          readUpTo: str(c["readUpTo"]),
          last: str(c["last"]),
        };
      }
      this.unread = unread;
      this.changed();
      if (!inboxStarted) startInbox(typeof data["seq"] === "number" ? data["seq"] : 0);
    }, (error) => this.liveFailed(error, generation)));
    for (const [chatId, w] of this.watchedReceipts) w.unsub = this.listenReceipts(chatId);
    for (const [chatId, w] of this.watchedTyping) w.unsub = this.listenTyping(chatId);
  }

  private stopLive(): void {
    this.liveGeneration += 1;
    for (const unsub of this.liveUnsubs) unsub();
    this.liveUnsubs = [];
    for (const w of this.watchedReceipts.values()) {
      w.unsub?.();
      w.unsub = null;
    }
    for (const w of this.watchedTyping.values()) {
      w.unsub?.();
      w.unsub = null;
    }
  }

  /** A watched listener failed: listen again later while it is still watched (and online). */
  private rewatch(map: Map<string, { count: number; unsub: Unsubscribe | null }>, chatId: string,
    listen: (chatId: string) => Unsubscribe, error: unknown, failures: number): void {
    this.report(error);
    const entry = map.get(chatId);
    if (!entry) return;
    entry.unsub = null;
    setTimeout(() => {
      if (map.get(chatId) === entry && entry.unsub === null && this.canWork()) entry.unsub = listen(chatId);
    }, Math.max(1_000, this.delay(failures)));
  }

  private watchFailures = new Map<string, number>();

  private watchFailed(kind: "receipts" | "typing", chatId: string, error: unknown): void {
    const key = `${kind}/${chatId}`;
    const failures = (this.watchFailures.get(key) ?? 0) + 1;
    this.watchFailures.set(key, failures);
    if (kind === "receipts") this.rewatch(this.watchedReceipts, chatId, (id) => this.listenReceipts(id), error, failures);
    else this.rewatch(this.watchedTyping, chatId, (id) => this.listenTyping(id), error, failures);
  }

  private watch(
    map: Map<string, { count: number; unsub: Unsubscribe | null }>,
    chatId: string,
    listen: (chatId: string) => Unsubscribe,
  ): () => void {
    const entry = map.get(chatId) ?? { count: 0, unsub: null };
    entry.count += 1;
    map.set(chatId, entry);
    if (entry.count === 1 && this.canWork()) entry.unsub = listen(chatId);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.count -= 1;
      if (entry.count === 0) {
        entry.unsub?.();
        map.delete(chatId);
      }
    };
  }

  /** Listen to the chat's read receipts (own messages become read); returns the release. */
  watchReceipts(chatId: string): () => void {
    return this.watch(this.watchedReceipts, chatId, (id) => this.listenReceipts(id));
  }

  /** Listen to who is typing in the chat; returns the release. */
  watchTyping(chatId: string): () => void {
    return this.watch(this.watchedTyping, chatId, (id) => this.listenTyping(id));
  }

  private listenReceipts(chatId: string): Unsubscribe {
    return onSnapshot(collection(this.firestore, "chats", chatId, "readReceipts"), (snap) => {
      const positions = new Map<string, string>();
      for (const d of snap.docs) {
        const upTo = str(d.data()["readUpToMessageId"]);
        if (upTo !== null) positions.set(d.id, upTo);
      }
      this.receipts.set(chatId, positions);
      this.watchFailures.delete(`receipts/${chatId}`);
      this.changed();
    }, (error) => this.watchFailed("receipts", chatId, error));
  }

  private listenTyping(chatId: string): Unsubscribe {
    const q = query(
      collectionGroup(this.firestore, "typingEvents"),
      where("chatId", "==", chatId),
      where("participants", "array-contains", this.userId),
    );
    return onSnapshot(q, (snap) => {
      const users = new Map<string, number>();
      for (const d of snap.docs) {
        const data = d.data();
        const uid = str(data["userId"]);
        const expiresAt = millis(data["expiresAt"]);
        if (uid === null || uid === this.userId || expiresAt === null || data["isTyping"] === false) continue;
        users.set(uid, Math.max(expiresAt, users.get(uid) ?? 0));
      }
      this.typingRaw.set(chatId, users);
      this.watchFailures.delete(`typing/${chatId}`);
      this.updateTyping(chatId);
    }, (error) => this.watchFailed("typing", chatId, error));
  }

  /** Who types now; a timer takes each indicator away at its expiresAt. */
  private updateTyping(chatId: string): void {
    const now = Date.now();
    const users = [...(this.typingRaw.get(chatId) ?? new Map<string, number>()).entries()]
      .filter(([, expiresAt]) => expiresAt > now)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([userId, expiresAt]) => ({ userId, expiresAt, name: this.nameOf(userId) }));
    const timer = this.typingTimers.get(chatId);
    if (timer) clearTimeout(timer);
    this.typingTimers.delete(chatId);
    if (users.length) {
      const next = Math.min(...users.map((u) => u.expiresAt));
      this.typingTimers.set(chatId, setTimeout(() => this.updateTyping(chatId), Math.max(0, next - now) + 5));
    }
    const before = this.typing[chatId] ?? [];
    const same = before.length === users.length && before.every((u, i) => u.userId === users[i]?.userId && u.expiresAt === users[i]?.expiresAt);
    if (same) return;
    const typing = { ...this.typing };
    if (users.length) typing[chatId] = users;
    else delete typing[chatId];
    this.typing = typing;
    this.changed();
  }

  private nameOf(userId: string): string {
    const given = this.options.displayName?.(userId);
    if (given) return given;
    for (const list of this.chats.values()) {
      for (let i = list.length - 1; i >= 0; i -= 1) {
        const m = list[i];
        if (m && m.senderId === userId && m.senderName) return m.senderName;
      }
    }
    return userId;
  }

  // ---------------------------------------------------------------- signals

  /** A keystroke: at most one call per 3 s while typing; stops by itself after 5 s without one. */
  startTyping(chatId: string): void {
    if (this.disposed) return;
    const now = Date.now();
    const current = this.ownTyping.get(chatId);
    if (current) clearTimeout(current.idle);
    const idle = setTimeout(() => this.stopTyping(chatId), TYPING_IDLE_MS);
    if (!current || now - current.lastSent >= TYPING_THROTTLE_MS) {
      this.ownTyping.set(chatId, { lastSent: now, idle });
      void this.callWithRetries("pack427_updateTypingState", { chatId, isTyping: true }).catch((e: unknown) => this.report(e));
    } else {
      this.ownTyping.set(chatId, { lastSent: current.lastSent, idle });
    }
  }

  /** The user stopped typing (no call if they were not). */
  stopTyping(chatId: string): void {
    const current = this.ownTyping.get(chatId);
    if (!current) return;
    clearTimeout(current.idle);
    this.ownTyping.delete(chatId);
    if (this.disposed) return;
    void this.callWithRetries("pack427_updateTypingState", { chatId, isTyping: false }).catch((e: unknown) => this.report(e));
  }

  /** Everything up to `messageId` of the chat is read (on every device: the head moves). */
  async markAsRead(chatId: string, messageId: string): Promise<number> {
    const result = await this.callWithRetries("pack427_markAsRead", { chatId, readUpToMessageId: messageId });
    return result.unreadCount;
  }

  /** Mark the chat read up to its newest message (the inbox head's, else the newest stored from others). */
  async markChatAsRead(chatId: string): Promise<number> {
    let last = this.unread[chatId]?.last ?? null;
    if (last === null) {
      const list = this.chats.get(chatId) ?? [];
      last = [...list].reverse().find((m) => m.senderId !== this.userId)?.messageId ?? null;
    }
    if (last === null) return 0;
    return this.markAsRead(chatId, last);
  }

  /** Unread counts (chats with any) from pack427_getUnreadCounts (the head listener keeps them current anyway). */
  async refreshUnreadCounts(): Promise<Readonly<Record<string, number>>> {
    const result = await this.callWithRetries("pack427_getUnreadCounts", {});
    const unread: Record<string, ChatUnread> = {};
    const counts: Record<string, number> = {};
    for (const [chatId, count] of Object.entries(result.unreadCounts)) {
      if (count === undefined) continue;
      if (count > 0) counts[chatId] = count;
      const known = this.unread[chatId];
      unread[chatId] = { unread: count, readUpTo: known?.readUpTo ?? null, last: known?.last ?? null };
    }
    for (const [chatId, known] of Object.entries(this.unread)) {
      if (!(chatId in unread)) unread[chatId] = { ...known, unread: 0 };
    }
    this.unread = unread;
    this.changed();
    return counts;
  }

  /** Any other callable, with the client's retries (listScheduledMessages, recalculateUnreadCounters...). */
  request<N extends CallableName>(name: N, data: RequestOf<N>): Promise<ResponseOf<N>> {
    return this.callWithRetries(name, data);
  }
}

function rank(key: string): number {
  return key.startsWith("chat/") ? 0 : key === "chats" ? 1 : key === "sync" ? 2 : 3;
}

function sameView(a: ChatView, b: ChatView): boolean {
  return a.isOnline === b.isOnline && a.isSyncing === b.isSyncing &&
    a.failedMessagesCount === b.failedMessagesCount && a.queuedMessages.length === b.queuedMessages.length &&
    a.queuedMessages.every((m, i) => m === b.queuedMessages[i]) &&
    a.messages.length === b.messages.length &&
    a.messages.every((m, i) => {
      const n = b.messages[i];
      return n !== undefined && m.id === n.id && m.state === n.state && m.error === n.error;
    });
}

export { Pack427Error, NoAnswerError };
