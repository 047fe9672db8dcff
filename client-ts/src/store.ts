// The snapshot store the React hooks read (useSyncExternalStore): one immutable snapshot
// of the client's state, remade on every change, and per-chat views that keep their
// identity while nothing they show changed (so a chat screen does not re-render for
// another chat's message).
import type { OutboxMessage } from "./outbox.js";
import type { StoredMessage } from "./messages.js";
import type { ChatUnread, TypingUserState } from "./signals.js";

/** What a message in a chat is, as the user sees it. */
export type MessageState = "queued" | "sent" | "delivered" | "read" | "failed";

/** A chat's message with its state. `id` is the messageId, or the clientMessageId until accepted. */
export interface ChatMessage extends Omit<StoredMessage, "messageId"> {
  readonly id: string;
  readonly messageId: string | null;
  readonly own: boolean;
  readonly state: MessageState;
  readonly error: string | null;
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

export interface StoreSource {
  /** The snapshot as of now, but its version. */
  snapshot(): Omit<ClientSnapshot, "version">;
  /** The chat's view as of now. */
  chatView(chatId: string): ChatView;
}

export interface SnapshotStore {
  subscribe(listener: () => void): () => void;
  getSnapshot(): ClientSnapshot;
  /** Something changed: a new snapshot, and every subscriber told. */
  changed(): void;
  /** The chat's view; the same object as long as nothing it shows changed. */
  chatView(chatId: string): ChatView;
  /** Forget every subscriber. */
  close(): void;
}

export function createSnapshotStore(source: StoreSource): SnapshotStore {
  const listeners = new Set<() => void>();
  let version = 0;
  const make = (): ClientSnapshot => ({ ...source.snapshot(), version });
  let snapshot = make();
  const chatViews = new Map<string, { version: number; view: ChatView }>();
  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    getSnapshot: () => snapshot,
    changed() {
      version += 1;
      snapshot = make();
      for (const listener of [...listeners]) listener();
    },
    chatView(chatId) {
      const cached = chatViews.get(chatId);
      if (cached && cached.version === version) return cached.view;
      const view = source.chatView(chatId);
      if (cached && sameView(cached.view, view)) {
        cached.version = version;
        return cached.view;
      }
      chatViews.set(chatId, { version, view });
      return view;
    },
    close() {
      listeners.clear();
    },
  };
}

/** What a chat's view is made of. */
export interface ChatViewInput {
  readonly userId: string;
  readonly chatId: string;
  /** The chat's stored messages, oldest first. */
  readonly stored: readonly StoredMessage[];
  /** The user's own read position (the inbox head's). */
  readonly readUpTo: string | null;
  /** Each reader's read position (the chat's read receipts), if watched. */
  readonly receipts: ReadonlyMap<string, string> | undefined;
  /** The user's newest message every recipient has, if known. */
  readonly deliveredUpTo: string | null;
  readonly outbox: readonly OutboxMessage[];
  readonly isOnline: boolean;
  readonly isSyncing: boolean;
}

/**
 * The chat's messages with their states, the queued and the failed ones last. The user's
 * own message is read once another reader's position reaches it, else delivered once the
 * delivered mark does, else sent; another's is read once the user's position reaches it.
 */
export function buildChatView(input: ChatViewInput): ChatView {
  const { userId, chatId, readUpTo, receipts: others, deliveredUpTo: delivered } = input;
  const messages: ChatMessage[] = input.stored.map((m) => {
    const own = m.senderId === userId;
    let state: MessageState;
    if (own) {
      const readByOther = others ? [...others.entries()].some(([uid, upTo]) => uid !== userId && upTo >= m.messageId) : false;
      state = readByOther ? "read" : delivered !== null && delivered >= m.messageId ? "delivered" : "sent";
    } else {
      state = readUpTo !== null && readUpTo >= m.messageId ? "read" : "delivered";
    }
    return { ...m, id: m.messageId, own, state, error: null };
  });
  const pending = input.outbox.filter((o) => o.chatId === chatId);
  for (const o of pending) {
    messages.push({
      id: o.clientMessageId,
      messageId: null,
      clientMessageId: o.clientMessageId,
      chatId,
      senderId: userId,
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
    isOnline: input.isOnline,
    isSyncing: input.isSyncing,
  };
}

/** Whether a chat screen would render both alike (the cached view can stay). */
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
