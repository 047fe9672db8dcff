import { useEffect, useRef, useState, type FormEvent } from "react";
import { useOfflineAwareChat, useRealtimeSignals, type ChatMessage } from "@pack427/client/react";
import type { ChatInfo } from "./chats";
import { nameIn } from "./chats";
import { Scheduled } from "./Scheduled";

const STATE_TEXT: Record<ChatMessage["state"], string> = {
  queued: "queued",
  sent: "sent",
  delivered: "delivered",
  read: "read",
  failed: "not sent",
};

const STATE_ICON: Record<ChatMessage["state"], string> = {
  queued: "○",
  sent: "✓",
  delivered: "✓✓",
  read: "✓✓",
  failed: "!",
};

function time(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** How long after an own message is accepted its delivery receipt is asked for (pack427_getChatList). */
const RECEIPT_POLLS_MS = [800, 1_500, 3_000, 6_000, 12_000];

export function ChatScreen({ chat, userId }: { chat: ChatInfo; userId: string }) {
  const chatId = chat.id;
  const { messages, sendMessage, isOnline, retryFailedMessages, failedMessagesCount, refreshChat } =
    useOfflineAwareChat({ chatId, userId });
  const { typingText, isAnyoneTyping, startTyping, stopTyping, getUnreadCount, markChatAsRead } =
    useRealtimeSignals({ chatId, userId });
  const [draft, setDraft] = useState("");
  const listRef = useRef<HTMLOListElement>(null);
  const unread = getUnreadCount(chatId);
  const big = chat.participants.length > 50;

  // The chat is open: what arrived is read (on every device of the user: the inbox head moves).
  useEffect(() => {
    if (unread > 0 && isOnline) void markChatAsRead().catch(() => undefined);
  }, [unread, isOnline, markChatAsRead]);

  // This device's store has what reached its inbox and what it sent itself. The chat's whole
  // record (its own messages from other devices and scheduled ones included) comes from
  // refreshChat(): once when the chat opens, and whenever the chat's last message (live, from
  // the chat list) is one this device does not have.
  useEffect(() => {
    if (isOnline) void refreshChat().catch(() => undefined);
  }, [isOnline, refreshChat]);
  const lastId = chat.lastMessage?.messageId ?? null;
  const lastKnown = lastId === null || messages.some((m) => m.messageId === lastId);
  useEffect(() => {
    if (!lastKnown && isOnline) void refreshChat().catch(() => undefined);
  }, [lastKnown, lastId, isOnline, refreshChat]);

  // An own message is "sent" once accepted; whether a device of the recipient has it comes from
  // the engine's chat list (refreshChat). Asked a few times, backing off, after each new one.
  const lastOwnSent = [...messages].reverse().find((m) => m.own && m.messageId !== null);
  const waitingReceipt = lastOwnSent?.state === "sent" ? lastOwnSent.messageId : null;
  useEffect(() => {
    if (waitingReceipt === null || !isOnline) return undefined;
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = (i: number) => {
      const wait = RECEIPT_POLLS_MS[i];
      if (wait === undefined) return;
      timer = setTimeout(() => {
        if (cancelled) return;
        void refreshChat().catch(() => undefined).finally(() => {
          if (!cancelled) poll(i + 1);
        });
      }, wait);
    };
    poll(0);
    return () => {
      cancelled = true;
      if (timer) clearTimeout(timer);
    };
  }, [waitingReceipt, isOnline, refreshChat]);

  // Keep the newest message in view.
  const count = messages.length;
  useEffect(() => {
    const list = listRef.current;
    if (list) list.scrollTop = list.scrollHeight;
  }, [count]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const text = draft.trim();
    if (!text) return;
    setDraft("");
    stopTyping();
    void sendMessage(text);
  };

  return (
    <main className="chat" aria-labelledby="chat-title">
      <header className="chat-head">
        <h2 id="chat-title">{chat.title}</h2>
        <p className="muted">
          {chat.participants.length} members
          {big && <> · a large group: messages reach it by fan-out</>}
        </p>
        {failedMessagesCount > 0 && (
          <button type="button" onClick={() => void retryFailedMessages()}>
            Retry {failedMessagesCount} not sent
          </button>
        )}
      </header>
      <ol className="messages" aria-label={`Messages in ${chat.title}`} ref={listRef} tabIndex={0}>
        {messages.length === 0 && <li className="muted">No messages yet. Say hello.</li>}
        {messages.map((m) => (
          <li key={m.id} className={m.own ? "mine" : "theirs"} data-state={m.own ? m.state : undefined}>
            <span className="sender">{m.own ? "You" : m.senderName ?? nameIn(chat, m.senderId)}</span>
            <span className="text">{m.text ?? "(attachment)"}</span>
            <span className="meta">
              <time dateTime={new Date(m.createdAt).toISOString()}>{time(m.createdAt)}</time>
              {m.own && (
                <span className={`state state-${m.state}`} data-testid="state" title={m.error ?? STATE_TEXT[m.state]}>
                  <span aria-hidden="true">{STATE_ICON[m.state]} </span>{STATE_TEXT[m.state]}
                </span>
              )}
            </span>
            {m.state === "failed" && (
              <span className="failure">
                {m.error && <span className="error">{m.error}</span>}
                <button type="button" onClick={() => void retryFailedMessages()} aria-label={`Retry sending: ${m.text ?? "attachment"}`}>
                  Retry
                </button>
              </span>
            )}
          </li>
        ))}
      </ol>
      <p className="typing" role="status" aria-live="polite" data-testid="typing">
        {isAnyoneTyping ? `${typingText}…` : ""}
      </p>
      <form className="composer" onSubmit={submit}>
        <label htmlFor="composer" className="visually-hidden">Message to {chat.title}</label>
        <input
          id="composer"
          value={draft}
          autoComplete="off"
          placeholder={isOnline ? "Write a message" : "Write a message (it waits in the outbox)"}
          onChange={(e) => {
            setDraft(e.target.value);
            if (e.target.value) startTyping();
          }}
          onBlur={() => stopTyping()}
          maxLength={4000}
        />
        <button type="submit" disabled={!draft.trim()}>Send</button>
      </form>
      <Scheduled chatId={chatId} userId={userId} isOnline={isOnline} lastMessageId={lastId} />
    </main>
  );
}
