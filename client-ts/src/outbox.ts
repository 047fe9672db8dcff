// The outbox: messages written on this device and not accepted by the engine yet.
//
// send() gives a message its clientMessageId (a ULID, the engine's idempotency key) and
// stores it in the outbox before anything goes on the network. The outbox is sent oldest
// first, one at a time, with the same clientMessageId on every retry (the engine answers
// a repeat with the first result), so a new client on the same storage (the app was
// killed) resumes it. Persisted under "outbox".
import type { ClientContext } from "./context.js";
import { classify } from "./errors.js";
import type { RequestOf, ResponseOf } from "./generated/api.js";
import { ulid } from "./ulid.js";

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

export interface Outbox {
  /** Oldest first. */
  readonly messages: readonly OutboxMessage[];
  /** The outbox as loaded from the storage. */
  restore(messages: OutboxMessage[]): void;
  /**
   * Write a message: stored in the outbox (resolves once stored), then sent when online.
   * Returns it as stored (queued).
   */
  send(chatId: string, text: string | null, options?: { contentRef?: string }): Promise<OutboxMessage>;
  /** Queue the failed messages (of one chat, or all) again with their clientMessageIds; how many. */
  retryFailed(chatId?: string): Promise<number>;
  /** Send the outbox, oldest first, until it is empty or the device is offline. */
  flush(): Promise<void>;
}

export function createOutbox(context: ClientContext): Outbox {
  const { calls, persistence } = context;
  const retry = calls.policy;
  let list: OutboxMessage[] = [];
  let flushing: Promise<void> | null = null;
  let flushAgain = false;

  const update = (clientMessageId: string, change: Partial<OutboxMessage>): void => {
    list = list.map((o) => (o.clientMessageId === clientMessageId ? { ...o, ...change } : o));
    persistence.markDirty("outbox");
  };

  /**
   * One message until accepted or failed (true), or until the device is offline (false).
   * Without an answer it is tried again for as long as the device is online (the engine
   * may have it: the same clientMessageId makes the repeat safe); a server error or an
   * unexpected answer maxAttempts times; a refusal, or a rate limit asking for a longer
   * wait than maxRateLimitWaitMs, fails it at once.
   */
  const sendOne = async (message: OutboxMessage): Promise<boolean> => {
    const data: RequestOf<"pack427_sendMessage"> = { chatId: message.chatId, clientMessageId: message.clientMessageId };
    if (message.text !== null) data.text = message.text;
    if (message.contentRef !== null) data.contentRef = message.contentRef;
    let serverFailures = 0;
    let noAnswers = 0;
    let attempts = message.attempts;
    for (;;) {
      if (!context.canWork()) return false;
      attempts += 1;
      let result: ResponseOf<"pack427_sendMessage">;
      try {
        result = await calls.invoke("pack427_sendMessage", data);
      } catch (error) {
        const failure = classify(error);
        const text = error instanceof Error ? error.message : String(error);
        if (failure.kind === "no-answer") {
          // The engine may or may not have it; the same clientMessageId makes the repeat safe.
          noAnswers += 1;
          update(message.clientMessageId, { attempts, lastError: text });
          await calls.pause(calls.delay(noAnswers));
          continue;
        }
        if (failure.kind === "rate-limited") {
          const wait = failure.retryAfterMs ?? retry.maxDelayMs;
          if (wait <= retry.maxRateLimitWaitMs) {
            await calls.pause(wait);
            continue;
          }
        } else if (failure.kind === "retryable") {
          serverFailures += 1;
          if (serverFailures < retry.maxAttempts) {
            update(message.clientMessageId, { attempts, lastError: text });
            await calls.pause(calls.delay(serverFailures));
            continue;
          }
        }
        update(message.clientMessageId, { attempts, lastError: text, status: "failed" });
        await persistence.persist();
        context.changed();
        return true;
      }
      if (typeof result !== "object" || result === null || typeof result.messageId !== "string" || !result.messageId) {
        // Not the send's answer (a proxy's page, a misrouted call): not accepted; try again, bounded.
        serverFailures += 1;
        const failed = serverFailures >= retry.maxAttempts;
        update(message.clientMessageId, { attempts, lastError: "unexpected answer", ...(failed ? { status: "failed" } : {}) });
        if (failed) {
          await persistence.persist();
          context.changed();
          return true;
        }
        await calls.pause(calls.delay(serverFailures));
        continue;
      }
      // Accepted: the message is stored as the user's own (chat first), then leaves the outbox.
      context.messages.add([{
        messageId: result.messageId,
        clientMessageId: message.clientMessageId,
        chatId: message.chatId,
        senderId: context.userId,
        senderName: null,
        text: message.text,
        contentRef: message.contentRef,
        createdAt: message.createdAt,
        deliveredAt: null,
        systemNudge: false,
      }]);
      list = list.filter((o) => o.clientMessageId !== message.clientMessageId);
      persistence.markDirty("outbox");
      await persistence.persist();
      context.changed();
      return true;
    }
  };

  const flush = (): Promise<void> => {
    if (flushing) {
      flushAgain = true;
      return flushing;
    }
    flushing = (async () => {
      await null; // flushing is assigned before the body can finish
      try {
        do {
          flushAgain = false;
          while (context.canWork()) {
            const next = list.find((o) => o.status === "queued");
            if (!next) break;
            if (!(await sendOne(next))) break;
          }
        } while (flushAgain && context.canWork());
      } catch (error) {
        context.report(error);
      } finally {
        flushing = null;
      }
    })();
    return flushing;
  };

  return {
    get messages() {
      return list;
    },
    restore(messages) {
      list = messages;
    },
    async send(chatId, text, options = {}) {
      await context.load();
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
      list.push(message);
      persistence.markDirty("outbox");
      await persistence.persist();
      context.changed();
      void flush();
      return message;
    },
    async retryFailed(chatId) {
      await context.load();
      let count = 0;
      list = list.map((o) => {
        if (o.status !== "failed" || (chatId !== undefined && o.chatId !== chatId)) return o;
        count += 1;
        return { ...o, status: "queued", attempts: 0 };
      });
      if (count) {
        persistence.markDirty("outbox");
        await persistence.persist();
        context.changed();
        void flush();
      }
      return count;
    },
    flush,
  };
}
