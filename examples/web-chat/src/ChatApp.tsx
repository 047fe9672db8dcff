import { useEffect, useState, useSyncExternalStore } from "react";
import type { User } from "firebase/auth";
import type { Firestore } from "firebase/firestore";
import { usePack427Client, useRealtimeSignals } from "@pack427/client/react";
import { useChats } from "./chats";
import { ChatList } from "./ChatList";
import { ChatScreen } from "./ChatScreen";
import { useOfflineShellReady } from "./offline-shell";

function chatFromHash(): string | null {
  const match = /^#\/chat\/(.+)$/.exec(window.location.hash);
  return match?.[1] ? decodeURIComponent(match[1]) : null;
}

function useHashChat(): string | null {
  const [chatId, setChatId] = useState(chatFromHash);
  useEffect(() => {
    const onHash = () => setChatId(chatFromHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  return chatId;
}

export function ChatApp({ user, db, onSignOut }: { user: User; db: Firestore; onSignOut: () => void }) {
  const userId = user.uid;
  const client = usePack427Client(userId);
  const snapshot = useSyncExternalStore(client.subscribe, client.getSnapshot);
  const { unreadCounts, totalUnread } = useRealtimeSignals({ userId });
  const { chats, loaded, error } = useChats(db, userId);
  const chatId = useHashChat();
  const chat = chats.find((c) => c.id === chatId);
  const offlineReady = useOfflineShellReady();
  const me = chats.find((c) => c.memberNames[userId])?.memberNames[userId] ?? user.email ?? userId;
  const queued = snapshot.outbox.filter((m) => m.status === "queued");

  useEffect(() => {
    document.title = totalUnread > 0 ? `(${totalUnread}) PACK 427 chat` : "PACK 427 chat";
  }, [totalUnread]);

  return (
    <div className="app">
      <header className="top">
        <h1>PACK 427 chat</h1>
        <p className="who">
          Signed in as <strong data-testid="me">{me}</strong>
          <button type="button" onClick={onSignOut}>Sign out</button>
        </p>
      </header>
      {!snapshot.isOnline && (
        <section className="offline" role="status" aria-label="Offline">
          <p>
            <strong>You are offline.</strong>{" "}
            {queued.length === 0
              ? "Messages you write wait in the outbox and go when you are back online."
              : `${queued.length} ${queued.length === 1 ? "message waits" : "messages wait"} in the outbox; ${queued.length === 1 ? "it goes" : "they go"} when you are back online.`}
          </p>
          {queued.length > 0 && (
            <ol className="outbox" aria-label="Outbox">
              {queued.map((m) => (
                <li key={m.clientMessageId}>
                  <span className="muted">{chats.find((c) => c.id === m.chatId)?.title ?? m.chatId}:</span> {m.text}
                </li>
              ))}
            </ol>
          )}
        </section>
      )}
      <div className="panes">
        <ChatList chats={chats} loaded={loaded} error={error} selected={chatId} unreadCounts={unreadCounts}
          totalUnread={totalUnread} userId={userId} />
        {chatId && chat ? (
          <ChatScreen key={chatId} chat={chat} userId={userId} />
        ) : (
          <main className="empty">
            <p>{chatId && loaded ? "This chat is not one of yours." : "Pick a chat."}</p>
          </main>
        )}
      </div>
      <footer className="muted">
        {offlineReady ? "This page opens offline too." : "Preparing offline use…"}
      </footer>
    </div>
  );
}
