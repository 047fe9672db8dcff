// Signals: the inbox head (unread counts, read positions), the chats' read receipts and
// delivery marks (what the user's own messages show), and typing (who types in a chat, and
// the user's own typing sent to the engine). Each listener is under firestore.rules with
// the user's own auth.
import { collection, collectionGroup, onSnapshot, query, where, type DocumentData } from "firebase/firestore";
import type { ClientContext } from "./context.js";
import { millis, str } from "./fields.js";
import type { RequestOf } from "./generated/api.js";
import { createChatWatches, type ChatWatches } from "./watches.js";

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

export const TYPING_THROTTLE_MS = 3_000;
export const TYPING_IDLE_MS = 5_000;

export interface Signals {
  /**
   * Replaced (not changed in place) on every change: the head's chats, and the chats parked
   * out of it (users/{uid}/inboxChats, listened to while the head has any).
   */
  readonly unread: Readonly<Record<string, ChatUnread>>;
  /**
   * The unread messages of the chats parked out of the inbox head (it holds at most 500 chats),
   * from the head: the total unread is the head's chats' counts and this, exact at every moment.
   */
  readonly parkedUnread: number;
  /** The unread messages of the chats the inbox head holds (its `chats`), together. */
  readonly headUnread: number;
  /** Replaced (not changed in place) on every change. */
  readonly typing: Readonly<Record<string, readonly TypingUserState[]>>;
  /** Each reader's read position in the chat, if its receipts are watched. */
  receiptsOf(chatId: string): ReadonlyMap<string, string> | undefined;
  /** The user's newest message in the chat every recipient has (from refreshReceipts). */
  deliveredUpToOf(chatId: string): string | null;
  /** The inbox head as the server has it: the unread counts and read positions of every chat. */
  applyHead(data: DocumentData): void;
  /** Listen to the chat's read receipts (own messages become read); returns the release. */
  watchReceipts(chatId: string): () => void;
  /** Listen to who is typing in the chat; returns the release. */
  watchTyping(chatId: string): () => void;
  /** Online again: the watched chats' listeners start again (receipts first). */
  resume(): void;
  /** Offline: the watched chats' listeners stop (they stay watched). */
  pause(): void;
  dispose(): void;
  /** A keystroke: at most one call per 3 s while typing; stops by itself after 5 s without one. */
  startTyping(chatId: string): void;
  /** The user stopped typing (no call if they were not). */
  stopTyping(chatId: string): void;
  /** Everything up to `messageId` of the chat is read (on every device: the head moves). */
  markAsRead(chatId: string, messageId: string): Promise<number>;
  /** Mark the chat read up to its newest message (the inbox head's, else the newest stored from others). */
  markChatAsRead(chatId: string): Promise<number>;
  /** Unread counts (chats with any) from pack427_getUnreadCounts (the head listener keeps them current anyway). */
  refreshUnreadCounts(): Promise<Readonly<Record<string, number>>>;
  /**
   * The receipt of the chat's last message, from pack427_getChatList (at most 20 pages of
   * 50): if it is the user's own and every recipient has it, the chat is delivered up to it.
   */
  refreshReceipts(chatId: string): Promise<void>;
}

export function createSignals(context: ClientContext): Signals {
  const { calls, userId } = context;
  let unreadByChat: Record<string, ChatUnread> = {};
  let headByChat: Record<string, ChatUnread> = {};
  let parkedByChat: Record<string, ChatUnread> = {};
  let parkedUnread = 0;
  let parkedUnsub: (() => void) | null = null;
  const merge = (): void => {
    unreadByChat = { ...parkedByChat, ...headByChat };
  };
  const chatUnreadOf = (c: Record<string, unknown>): ChatUnread => {
    const count = c["unread"];
    return {
      unread: typeof count === "number" && count > 0 ? count : 0,
      readUpTo: str(c["readUpTo"]),
      last: str(c["last"]),
    };
  };
  /** Listen to the parked chats while the head has any (a user with few chats never does). */
  const watchParked = (on: boolean): void => {
    if (on && parkedUnsub === null && !context.isDisposed()) {
      parkedUnsub = onSnapshot(collection(context.firestore, "users", userId, "inboxChats"), (snap) => {
        const parked: Record<string, ChatUnread> = {};
        for (const d of snap.docs) parked[d.id] = chatUnreadOf(d.data());
        parkedByChat = parked;
        merge();
        context.changed();
      }, (error) => context.report(error));
    } else if (!on && parkedUnsub !== null) {
      parkedUnsub();
      parkedUnsub = null;
      parkedByChat = {};
    }
  };
  /** Per chat: each reader's readUpToMessageId. */
  const receipts = new Map<string, Map<string, string>>();
  const deliveredUpTo = new Map<string, string>();
  let typingByChat: Record<string, TypingUserState[]> = {};
  /** Per chat: who the typing events say types, until when (expired ones included). */
  const typingRaw = new Map<string, Map<string, number>>();
  const typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  const ownTyping = new Map<string, { lastSent: number; idle: ReturnType<typeof setTimeout> }>();

  const receiptWatches: ChatWatches = createChatWatches(context, (chatId) =>
    onSnapshot(collection(context.firestore, "chats", chatId, "readReceipts"), (snap) => {
      const positions = new Map<string, string>();
      for (const d of snap.docs) {
        const upTo = str(d.data()["readUpToMessageId"]);
        if (upTo !== null) positions.set(d.id, upTo);
      }
      receipts.set(chatId, positions);
      receiptWatches.succeeded(chatId);
      context.changed();
    }, (error) => receiptWatches.failed(chatId, error)));

  const typingWatches: ChatWatches = createChatWatches(context, (chatId) => {
    const q = query(
      collectionGroup(context.firestore, "typingEvents"),
      where("chatId", "==", chatId),
      where("participants", "array-contains", userId),
    );
    return onSnapshot(q, (snap) => {
      const users = new Map<string, number>();
      for (const d of snap.docs) {
        const data = d.data();
        const uid = str(data["userId"]);
        const expiresAt = millis(data["expiresAt"]);
        if (uid === null || uid === userId || expiresAt === null || data["isTyping"] === false) continue;
        users.set(uid, Math.max(expiresAt, users.get(uid) ?? 0));
      }
      typingRaw.set(chatId, users);
      typingWatches.succeeded(chatId);
      updateTyping(chatId);
    }, (error) => typingWatches.failed(chatId, error));
  });

  /** The name typingText shows: the app's, else the one the user's stored messages carry, else the uid. */
  const nameOf = (id: string): string => {
    const given = context.options.displayName?.(id);
    if (given) return given;
    return context.messages.senderName(id) ?? id;
  };

  /** Who types now; a timer takes each indicator away at its expiresAt. */
  const updateTyping = (chatId: string): void => {
    const now = Date.now();
    const users = [...(typingRaw.get(chatId) ?? new Map<string, number>()).entries()]
      .filter(([, expiresAt]) => expiresAt > now)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([id, expiresAt]) => ({ userId: id, expiresAt, name: nameOf(id) }));
    const timer = typingTimers.get(chatId);
    if (timer) clearTimeout(timer);
    typingTimers.delete(chatId);
    if (users.length) {
      const next = Math.min(...users.map((u) => u.expiresAt));
      typingTimers.set(chatId, setTimeout(() => updateTyping(chatId), Math.max(0, next - now) + 5));
    }
    const before = typingByChat[chatId] ?? [];
    const same = before.length === users.length && before.every((u, i) => u.userId === users[i]?.userId && u.expiresAt === users[i]?.expiresAt);
    if (same) return;
    const typing = { ...typingByChat };
    if (users.length) typing[chatId] = users;
    else delete typing[chatId];
    typingByChat = typing;
    context.changed();
  };

  const sendTyping = (data: RequestOf<"pack427_updateTypingState">): void => {
    void calls.callWithRetries("pack427_updateTypingState", data).catch((e: unknown) => context.report(e));
  };

  const stopTyping = (chatId: string): void => {
    const current = ownTyping.get(chatId);
    if (!current) return;
    clearTimeout(current.idle);
    ownTyping.delete(chatId);
    if (context.isDisposed()) return;
    sendTyping({ chatId, isTyping: false });
  };

  const markAsRead = async (chatId: string, messageId: string): Promise<number> => {
    const result = await calls.callWithRetries("pack427_markAsRead", { chatId, readUpToMessageId: messageId });
    return result.unreadCount;
  };

  return {
    get unread() {
      return unreadByChat;
    },
    get parkedUnread() {
      return parkedUnread;
    },
    get headUnread() {
      return Object.values(headByChat).reduce((sum, c) => sum + c.unread, 0);
    },
    get typing() {
      return typingByChat;
    },
    receiptsOf: (chatId) => receipts.get(chatId),
    deliveredUpToOf: (chatId) => deliveredUpTo.get(chatId) ?? null,
    applyHead(data) {
      const chats = (data["chats"] ?? {}) as Record<string, Record<string, unknown>>;
      const unread: Record<string, ChatUnread> = {};
      for (const [chatId, c] of Object.entries(chats)) unread[chatId] = chatUnreadOf(c);
      headByChat = unread;
      const parked = data["parkedUnread"];
      parkedUnread = typeof parked === "number" && parked > 0 ? parked : 0;
      const parkedChats = data["parkedChats"];
      watchParked(typeof parkedChats === "number" && parkedChats > 0);
      merge();
      context.changed();
    },
    watchReceipts: (chatId) => receiptWatches.watch(chatId),
    watchTyping: (chatId) => typingWatches.watch(chatId),
    resume() {
      receiptWatches.resume();
      typingWatches.resume();
    },
    pause() {
      receiptWatches.pause();
      typingWatches.pause();
    },
    dispose() {
      watchParked(false);
      receiptWatches.close();
      typingWatches.close();
      for (const t of typingTimers.values()) clearTimeout(t);
      for (const t of ownTyping.values()) clearTimeout(t.idle);
    },
    startTyping(chatId) {
      if (context.isDisposed()) return;
      const now = Date.now();
      const current = ownTyping.get(chatId);
      if (current) clearTimeout(current.idle);
      const idle = setTimeout(() => stopTyping(chatId), TYPING_IDLE_MS);
      if (!current || now - current.lastSent >= TYPING_THROTTLE_MS) {
        ownTyping.set(chatId, { lastSent: now, idle });
        sendTyping({ chatId, isTyping: true });
      } else {
        ownTyping.set(chatId, { lastSent: current.lastSent, idle });
      }
    },
    stopTyping,
    markAsRead,
    async markChatAsRead(chatId) {
      let last = unreadByChat[chatId]?.last ?? null;
      if (last === null) {
        const list = context.messages.chat(chatId);
        last = [...list].reverse().find((m) => m.senderId !== userId)?.messageId ?? null;
      }
      if (last === null) return 0;
      return markAsRead(chatId, last);
    },
    async refreshUnreadCounts() {
      const result = await calls.callWithRetries("pack427_getUnreadCounts", {});
      const unread: Record<string, ChatUnread> = {};
      const counts: Record<string, number> = {};
      for (const [chatId, count] of Object.entries(result.unreadCounts)) {
        if (count === undefined) continue;
        if (count > 0) counts[chatId] = count;
        const known = unreadByChat[chatId];
        unread[chatId] = { unread: count, readUpTo: known?.readUpTo ?? null, last: known?.last ?? null };
      }
      for (const [chatId, known] of Object.entries(unreadByChat)) {
        if (!(chatId in unread)) unread[chatId] = { ...known, unread: 0 };
      }
      unreadByChat = unread;
      context.changed();
      return counts;
    },
    async refreshReceipts(chatId) {
      let cursor: string | null = null;
      for (let pages = 0; pages < 20; pages += 1) {
        const data: RequestOf<"pack427_getChatList"> = { limit: 50 };
        if (cursor !== null) data.cursor = cursor;
        const list = await calls.callWithRetries("pack427_getChatList", data);
        const item = list.chats.find((c) => c.chatId === chatId);
        if (item) {
          const statuses = Object.values(item.lastMessageStatus ?? {});
          if (item.lastMessage.senderId === userId && statuses.length &&
              statuses.every((s) => s === "delivered" || s === "read")) {
            deliveredUpTo.set(chatId, item.lastMessage.messageId);
            context.changed();
          }
          return;
        }
        cursor = list.cursor;
        if (!list.hasMore || cursor === null) return;
      }
    },
  };
}
