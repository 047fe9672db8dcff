import type { ChatInfo } from "./chats";
import { nameIn } from "./chats";

interface Props {
  readonly chats: readonly ChatInfo[];
  readonly loaded: boolean;
  readonly error: string | null;
  readonly selected: string | null;
  readonly unreadCounts: Readonly<Record<string, number>>;
  readonly totalUnread: number;
  readonly userId: string;
}

function time(ms: number): string {
  if (!ms) return "";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function ChatList({ chats, loaded, error, selected, unreadCounts, totalUnread, userId }: Props) {
  return (
    <nav className="chat-list" aria-label="Chats">
      <h2>
        Chats{" "}
        <span className="total" data-testid="total-unread" aria-label={`${totalUnread} unread in all chats`}>
          {totalUnread} unread
        </span>
      </h2>
      {error && <p role="alert" className="error">{error}</p>}
      {!loaded && !error && <p role="status">Loading chats…</p>}
      {loaded && chats.length === 0 && <p>No chats yet.</p>}
      <ul>
        {chats.map((chat) => {
          const unread = unreadCounts[chat.id] ?? 0;
          const last = chat.lastMessage;
          const from = last ? (last.senderId === userId ? "You" : nameIn(chat, last.senderId)) : "";
          const label = `${chat.title}${unread ? `, ${unread} unread` : ""}${last ? `, last: ${from}: ${last.text}` : ""}`;
          return (
            <li key={chat.id} data-chat={chat.id}>
              <a href={`#/chat/${encodeURIComponent(chat.id)}`} aria-label={label}
                aria-current={chat.id === selected ? "page" : undefined}>
                <span className="title">
                  {chat.title}
                  {chat.participants.length > 2 && <span className="muted"> · {chat.participants.length}</span>}
                </span>
                {unread > 0 && <span className="badge" data-testid="unread-badge">{unread}</span>}
                <span className="last">
                  {last ? <><span className="from">{from}:</span> {last.text}</> : <em>no messages yet</em>}
                </span>
                <span className="time muted">{last ? time(last.createdAt) : ""}</span>
              </a>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}
