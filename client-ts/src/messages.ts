// The messages stored on this device, per chat in message (ULID) order and de-duplicated
// by messageId, and how the engine's two shapes of a message (a sync page's, an inbox
// entry's) become one StoredMessage.
import type { DocumentData } from "firebase/firestore";
import { millis, str } from "./fields.js";
import type { SyncedMessage } from "./generated/api.js";

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

export type MessagesListener = (messages: readonly StoredMessage[]) => void;

/** A message of a sync or resync page. */
export function fromWire(m: SyncedMessage): StoredMessage {
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

/** A document of users/{uid}/inbox, or null if it lacks what every message has (its chat, its sender). */
export function fromInboxEntry(data: DocumentData, id: string): StoredMessage | null {
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

/** Messages arrive mostly in order: insert from the end. */
function insertSorted(list: StoredMessage[], message: StoredMessage): void {
  let i = list.length;
  while (i > 0 && (list[i - 1]?.messageId ?? "") > message.messageId) i -= 1;
  list.splice(i, 0, message);
}

/**
 * The chats' messages in memory. Persisted under "chats" (the chat IDs) and "chat/{chatId}"
 * (its messages): add() marks what it changed dirty, the client's persist() writes it.
 */
export interface MessageStore {
  /** The chat's messages, oldest first (the stored list itself: copy it before handing it out). */
  chat(chatId: string): readonly StoredMessage[];
  chatIds(): string[];
  /** Every stored message, chat by chat. */
  all(): StoredMessage[];
  /** A chat as loaded from the storage. */
  restore(chatId: string, list: StoredMessage[]): void;
  /** Add messages not stored yet (in memory; persist() writes them). Returns the new ones. */
  add(messages: readonly StoredMessage[]): StoredMessage[];
  /** The sender name the user's newest stored message carries, if any. */
  senderName(userId: string): string | null;
}

export function createMessageStore(markDirty: (key: string) => void): MessageStore {
  const chats = new Map<string, StoredMessage[]>();
  const known = new Set<string>();
  return {
    chat: (chatId) => chats.get(chatId) ?? [],
    chatIds: () => [...chats.keys()],
    all: () => [...chats.values()].flat(),
    restore(chatId, list) {
      chats.set(chatId, list);
      for (const m of list) known.add(m.messageId);
    },
    add(messages) {
      const fresh: StoredMessage[] = [];
      for (const m of messages) {
        if (known.has(m.messageId)) continue;
        known.add(m.messageId);
        let list = chats.get(m.chatId);
        if (!list) {
          list = [];
          chats.set(m.chatId, list);
          markDirty("chats");
        }
        insertSorted(list, m);
        markDirty(`chat/${m.chatId}`);
        fresh.push(m);
      }
      return fresh;
    },
    senderName(userId) {
      for (const list of chats.values()) {
        for (let i = list.length - 1; i >= 0; i -= 1) {
          const m = list[i];
          if (m && m.senderId === userId && m.senderName) return m.senderName;
        }
      }
      return null;
    },
  };
}
