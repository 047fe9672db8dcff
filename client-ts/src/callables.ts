// The engine's callables, typed from the generated wire types, through an
// injectable invoker (the Firebase SDK's httpsCallable by default).
import { httpsCallable, type Functions } from "firebase/functions";
import { NoAnswerError, Pack427Error, type ErrorCode } from "./errors.js";
import type { CallableName, RequestOf, ResponseOf } from "./generated/api.js";

/** Calls one callable with its data; resolves with its result, rejects with Pack427Error or NoAnswerError. */
export type Invoker = (name: CallableName, data: unknown) => Promise<unknown>;

/** A typed call of any callable. */
export type Call = <N extends CallableName>(name: N, data: RequestOf<N>) => Promise<ResponseOf<N>>;

export function typedCall(invoker: Invoker): Call {
  return async <N extends CallableName>(name: N, data: RequestOf<N>): Promise<ResponseOf<N>> =>
    (await invoker(name, data)) as ResponseOf<N>;
}

interface FirebaseLikeError {
  code: string;
  message: string;
  details?: unknown;
}

function isFirebaseLikeError(error: unknown): error is FirebaseLikeError {
  return typeof error === "object" && error !== null && "code" in error && "message" in error;
}

/**
 * The Firebase SDK's answer to a call that got no answer: a failed fetch is
 * `internal` with the message "internal" (a server's INTERNAL says "INTERNAL"),
 * the SDK's own timeout `deadline-exceeded` with "deadline-exceeded".
 */
export function toClientError(error: unknown): Error {
  if (!isFirebaseLikeError(error)) return new NoAnswerError(String(error));
  const code = error.code.replace(/^functions\//, "") as ErrorCode;
  const message = error.message.replace(/^FirebaseError: /, "");
  if ((code === "internal" && message === "internal" && error.details === undefined) ||
      (code === "deadline-exceeded" && message === "deadline-exceeded")) {
    return new NoAnswerError(`no answer (${code})`);
  }
  return new Pack427Error(code, message, error.details);
}

/** The Firebase SDK's callable protocol, with the signed-in user's ID token. */
export function firebaseInvoker(functions: Functions, options: { timeoutMs?: number } = {}): Invoker {
  return async (name, data) => {
    try {
      const result = await httpsCallable(functions, name, { timeout: options.timeoutMs ?? 70_000 })(data);
      return result.data;
    } catch (error) {
      throw toClientError(error);
    }
  };
}
