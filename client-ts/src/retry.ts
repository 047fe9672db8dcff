// Calling the engine with the client's retry policy: back-off between tries, the waits a
// rate limit asks for, and pauses that end early when connectivity changes. Whether the
// engine answers at all (reachable) is part of what the client shows as online.
import type { Call } from "./callables.js";
import { classify, NoAnswerError } from "./errors.js";
import type { CallableName, RequestOf, ResponseOf } from "./generated/api.js";

export interface RetryPolicy {
  /** Tries per message (or call) on retryable errors before it fails (default 10). */
  readonly maxAttempts: number;
  /** The first back-off (default 200 ms), doubled after each failure... */
  readonly baseDelayMs: number;
  /** ...up to this (default 10 s). */
  readonly maxDelayMs: number;
  /** The longest resource-exhausted wait honoured (default 65 s); a longer one fails the message. */
  readonly maxRateLimitWaitMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 10,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  maxRateLimitWaitMs: 65_000,
};

export interface CallsHost {
  isDisposed(): boolean;
  /** What the connectivity source says (not whether the engine answers). */
  isConnected(): boolean;
  changed(): void;
}

/** The engine's callables with the client's retry policy. */
export interface Calls {
  /** The last call got an answer (any answer, errors included); false after a call without one. */
  reachable: boolean;
  readonly policy: RetryPolicy;
  /** End every pause now (connectivity changed, disposed): the waiting loops look again. */
  wake(): void;
  /** Wait `ms`, or less if woken (connectivity changed, disposed). */
  pause(ms: number): Promise<void>;
  /** The back-off after `failures` failures in a row. */
  delay(failures: number): number;
  /** One call, no retries; keeps `reachable` current. */
  invoke<N extends CallableName>(name: N, data: RequestOf<N>): Promise<ResponseOf<N>>;
  /**
   * An idempotent call, repeated after back-off: without an answer while online (as
   * long as `persistent`, else maxAttempts times), on retryable errors maxAttempts times.
   */
  callWithRetries<N extends CallableName>(name: N, data: RequestOf<N>, persistent?: boolean): Promise<ResponseOf<N>>;
}

export function createCalls(call: Call, policy: RetryPolicy, host: CallsHost): Calls {
  const wakers = new Set<() => void>();

  const pause = (ms: number): Promise<void> => new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      wakers.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    wakers.add(done);
  });

  const delay = (failures: number): number =>
    Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, failures - 1));

  const invoke = async <N extends CallableName>(name: N, data: RequestOf<N>): Promise<ResponseOf<N>> => {
    try {
      const result = await call(name, data);
      if (!calls.reachable) {
        calls.reachable = true;
        host.changed();
      }
      return result;
    } catch (error) {
      const reachable = !(error instanceof NoAnswerError);
      if (reachable !== calls.reachable) {
        calls.reachable = reachable;
        host.changed();
      }
      throw error;
    }
  };

  const callWithRetries = async <N extends CallableName>(
    name: N,
    data: RequestOf<N>,
    persistent = false,
  ): Promise<ResponseOf<N>> => {
    let failures = 0;
    for (;;) {
      if (host.isDisposed()) throw new NoAnswerError("client disposed");
      if (persistent && !host.isConnected()) throw new NoAnswerError("offline");
      try {
        return await invoke(name, data);
      } catch (error) {
        const failure = classify(error);
        if (failure.kind === "refused") throw error;
        if (failure.kind === "rate-limited") {
          await pause(Math.min(failure.retryAfterMs ?? policy.maxDelayMs, policy.maxRateLimitWaitMs));
          continue;
        }
        failures += 1;
        if ((failure.kind === "retryable" || !persistent) && failures >= policy.maxAttempts) throw error;
        await pause(delay(failures));
      }
    }
  };

  const calls: Calls = {
    reachable: true,
    policy,
    wake: () => {
      for (const w of [...wakers]) w();
    },
    pause,
    delay,
    invoke,
    callWithRetries,
  };
  return calls;
}
