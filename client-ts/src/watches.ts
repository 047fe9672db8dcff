// The per-chat listeners that hooks hold (a chat's read receipts, who types in it):
// counted, so several holders share one listener; off while the device is offline and on
// again with the live set; set up again after a failure, with back-off, while still held.
import type { Unsubscribe } from "firebase/firestore";
import type { ClientContext } from "./context.js";

interface Watch {
  count: number;
  unsub: Unsubscribe | null;
}

export interface ChatWatches {
  /** Hold the chat's listener; returns the release (the last release stops it). */
  watch(chatId: string): () => void;
  /** The device came online: listen to every held chat. */
  resume(): void;
  /** The device went offline: stop listening, keep what is held. */
  pause(): void;
  /** Stop listening and forget every holder. */
  close(): void;
  /** The chat's listener delivered a snapshot: its next failure backs off from the start. */
  succeeded(chatId: string): void;
  /** The chat's listener failed: listen again later while it is still held (and online). */
  failed(chatId: string, error: unknown): void;
}

/** `listen` starts the chat's listener, which calls succeeded() or failed() for the chat. */
export function createChatWatches(context: ClientContext, listen: (chatId: string) => Unsubscribe): ChatWatches {
  const watches = new Map<string, Watch>();
  const failures = new Map<string, number>();
  return {
    watch(chatId) {
      const entry = watches.get(chatId) ?? { count: 0, unsub: null };
      entry.count += 1;
      watches.set(chatId, entry);
      if (entry.count === 1 && context.canWork()) entry.unsub = listen(chatId);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        entry.count -= 1;
        if (entry.count === 0) {
          entry.unsub?.();
          watches.delete(chatId);
        }
      };
    },
    resume() {
      for (const [chatId, w] of watches) w.unsub = listen(chatId);
    },
    pause() {
      for (const w of watches.values()) {
        w.unsub?.();
        w.unsub = null;
      }
    },
    close() {
      for (const w of watches.values()) w.unsub?.();
      watches.clear();
    },
    succeeded(chatId) {
      failures.delete(chatId);
    },
    failed(chatId, error) {
      const count = (failures.get(chatId) ?? 0) + 1;
      failures.set(chatId, count);
      context.report(error);
      const entry = watches.get(chatId);
      if (!entry) return;
      entry.unsub = null;
      setTimeout(() => {
        if (watches.get(chatId) === entry && entry.unsub === null && context.canWork()) entry.unsub = listen(chatId);
      }, Math.max(1_000, context.calls.delay(count)));
    },
  };
}
