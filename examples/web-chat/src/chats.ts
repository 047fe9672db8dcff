// The user's chats, live from Firestore (firestore.rules: a participant may read a chat;
// lists must ask for participants array-contains the user). The engine keeps lastMessage.
import { useEffect, useState } from "react";
import { collection, onSnapshot, query, where, Timestamp, type Firestore } from "firebase/firestore";
import { learnNames } from "./names";

export interface LastMessage {
  readonly messageId: string;
  readonly senderId: string;
  readonly text: string;
  readonly createdAt: number;
}

export interface ChatInfo {
  readonly id: string;
  readonly title: string;
  readonly participants: readonly string[];
  readonly memberNames: Readonly<Record<string, string>>;
  readonly lastMessage: LastMessage | null;
}

function millis(value: unknown): number {
  if (value instanceof Timestamp) return value.toMillis();
  if (typeof value === "number") return value;
  return 0;
}

function toChat(id: string, data: Record<string, unknown>): ChatInfo {
  const participants = Array.isArray(data["participants"]) ? data["participants"].filter((p): p is string => typeof p === "string") : [];
  const rawNames = typeof data["memberNames"] === "object" && data["memberNames"] !== null ? data["memberNames"] as Record<string, unknown> : {};
  const memberNames: Record<string, string> = {};
  for (const [uid, name] of Object.entries(rawNames)) if (typeof name === "string") memberNames[uid] = name;
  learnNames(memberNames);
  const last = data["lastMessage"];
  let lastMessage: LastMessage | null = null;
  if (typeof last === "object" && last !== null) {
    const l = last as Record<string, unknown>;
    if (typeof l["messageId"] === "string") {
      lastMessage = {
        messageId: l["messageId"],
        senderId: typeof l["senderId"] === "string" ? l["senderId"] : "",
        text: typeof l["text"] === "string" ? l["text"] : l["hasContent"] ? "(attachment)" : "",
        createdAt: millis(l["createdAt"]),
      };
    }
  }
  const title = typeof data["title"] === "string" ? data["title"] : id;
  return { id, title, participants, memberNames, lastMessage };
}

export interface ChatsState {
  readonly chats: readonly ChatInfo[];
  readonly loaded: boolean;
  readonly error: string | null;
}

/** The user's chats, the most recently active first. */
export function useChats(db: Firestore, uid: string): ChatsState {
  const [state, setState] = useState<ChatsState>({ chats: [], loaded: false, error: null });
  useEffect(() => {
    const q = query(collection(db, "chats"), where("participants", "array-contains", uid));
    return onSnapshot(q, (snap) => {
      const chats = snap.docs.map((d) => toChat(d.id, d.data()));
      chats.sort((a, b) => (b.lastMessage?.createdAt ?? 0) - (a.lastMessage?.createdAt ?? 0) || a.title.localeCompare(b.title));
      setState({ chats, loaded: true, error: null });
    }, (error) => setState((s) => ({ ...s, error: error.message })));
  }, [db, uid]);
  return state;
}

export function nameIn(chat: ChatInfo | undefined, uid: string, fallback = "someone"): string {
  return chat?.memberNames[uid] ?? fallback;
}
