import { useCallback, useEffect, useState, type FormEvent } from "react";
import { ulid, type ScheduledMessageItem } from "@pack427/client";
import { usePack427Client } from "@pack427/client/react";

const DELAYS: readonly { label: string; ms: number }[] = [
  { label: "in 1 minute", ms: 60_000 },
  { label: "in 5 minutes", ms: 5 * 60_000 },
  { label: "in 1 hour", ms: 60 * 60_000 },
  { label: "tomorrow", ms: 24 * 60 * 60_000 },
];

function when(ms: number): string {
  return new Date(ms).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });
}

/** Send later: schedule (pack427_sendMessage with deliverAt), list and cancel this chat's scheduled messages. */
export function Scheduled({ chatId, userId, isOnline, lastMessageId }: {
  chatId: string;
  userId: string;
  isOnline: boolean;
  /** The chat's last message: a new one may be a scheduled message that went, so the list is read again. */
  lastMessageId: string | null;
}) {
  const client = usePack427Client(userId);
  const [items, setItems] = useState<readonly ScheduledMessageItem[]>([]);
  const [text, setText] = useState("");
  const [delay, setDelay] = useState(DELAYS[0]?.ms ?? 60_000);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const refresh = useCallback(async () => {
    try {
      const list = await client.request("pack427_listScheduledMessages", {});
      setItems(list.messages.filter((m) => m.chatId === chatId));
      setError(null);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }, [client, chatId]);

  useEffect(() => {
    if (!isOnline) return undefined;
    void refresh();
    const timer = setInterval(() => void refresh(), 30_000);
    return () => clearInterval(timer);
  }, [isOnline, refresh, lastMessageId]);

  const schedule = async (e: FormEvent) => {
    e.preventDefault();
    const body = text.trim();
    if (!body) return;
    setBusy(true);
    try {
      // The same clientMessageId on a retry: scheduled once.
      await client.request("pack427_sendMessage", { chatId, clientMessageId: ulid(), text: body, deliverAt: Date.now() + delay });
      setText("");
      await refresh();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const cancel = async (scheduledId: string) => {
    setBusy(true);
    try {
      await client.request("pack427_cancelScheduledMessage", { scheduledId });
      await refresh();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <details className="scheduled">
      <summary>Send later{items.length > 0 && ` (${items.length} scheduled)`}</summary>
      <form onSubmit={(e) => void schedule(e)} aria-label="Schedule a message">
        <label>
          Scheduled message
          <input value={text} onChange={(e) => setText(e.target.value)} maxLength={4000} autoComplete="off" />
        </label>
        <label>
          Deliver
          <select value={delay} onChange={(e) => setDelay(Number(e.target.value))}>
            {DELAYS.map((d) => <option key={d.ms} value={d.ms}>{d.label}</option>)}
          </select>
        </label>
        <button type="submit" disabled={busy || !isOnline || !text.trim()}>Schedule</button>
        {!isOnline && <span className="muted">Scheduling needs the network.</span>}
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      <ul aria-label="Scheduled messages">
        {items.length === 0 && <li className="muted">Nothing scheduled in this chat.</li>}
        {items.map((m) => (
          <li key={m.scheduledId}>
            <span>{m.text ?? "(attachment)"}</span> <span className="muted">{when(m.deliverAt)}</span>{" "}
            <button type="button" disabled={busy || !isOnline} onClick={() => void cancel(m.scheduledId)}
              aria-label={`Cancel scheduled message: ${m.text ?? "attachment"}`}>
              Cancel
            </button>
          </li>
        ))}
      </ul>
    </details>
  );
}
