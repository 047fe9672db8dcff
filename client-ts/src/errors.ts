// What went wrong with a call, and what the outbox does about it.

/** The callable protocol's error codes, as the Firebase SDK names them. */
export type ErrorCode =
  | "cancelled"
  | "unknown"
  | "invalid-argument"
  | "deadline-exceeded"
  | "not-found"
  | "already-exists"
  | "permission-denied"
  | "resource-exhausted"
  | "failed-precondition"
  | "aborted"
  | "out-of-range"
  | "unimplemented"
  | "internal"
  | "unavailable"
  | "data-loss"
  | "unauthenticated";

/** A callable answered with an error. */
export class Pack427Error extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(`${code}: ${message}`);
    this.name = "Pack427Error";
    this.code = code;
    this.details = details;
  }

  /** For resource-exhausted: how long the engine asked us to wait. */
  get retryAfterMs(): number | null {
    const details = this.details;
    if (details && typeof details === "object" && "retryAfterMs" in details) {
      const value = (details as { retryAfterMs: unknown }).retryAfterMs;
      return typeof value === "number" ? value : null;
    }
    return null;
  }

  /** The refusal's reason, when the engine gave one (`blocked`, `age_verification_required`...). */
  get reason(): string | null {
    const details = this.details;
    if (details && typeof details === "object" && "reason" in details) {
      const value = (details as { reason: unknown }).reason;
      return typeof value === "string" ? value : null;
    }
    return null;
  }
}

/**
 * No answer: the network failed, or the reply was lost. The request may or may not
 * have reached the server; only idempotent calls are repeated (every callable is).
 */
export class NoAnswerError extends Error {
  constructor(message = "no answer") {
    super(message);
    this.name = "NoAnswerError";
  }
}

/** How a failed call is handled. */
export type Failure =
  | { kind: "no-answer" }
  | { kind: "rate-limited"; retryAfterMs: number | null }
  | { kind: "retryable" }
  | { kind: "refused" };

const RETRYABLE: ReadonlySet<string> = new Set([
  "aborted",
  "internal",
  "unavailable",
  "deadline-exceeded",
  "unknown",
  "cancelled",
  "unauthenticated",
  "data-loss",
]);

export function classify(error: unknown): Failure {
  if (error instanceof NoAnswerError) return { kind: "no-answer" };
  if (error instanceof Pack427Error) {
    if (error.code === "resource-exhausted") return { kind: "rate-limited", retryAfterMs: error.retryAfterMs };
    return RETRYABLE.has(error.code) ? { kind: "retryable" } : { kind: "refused" };
  }
  return { kind: "retryable" };
}
