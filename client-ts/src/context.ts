// What the parts of one client (outbox, delivery, signals) share: the user, the options,
// the calls with their retries, the persisted state, the stored messages, and the
// client's own state and notifications.
import type { Firestore } from "firebase/firestore";
import type { ClientOptions } from "./client.js";
import type { MessageStore } from "./messages.js";
import type { Persistence } from "./persistence.js";
import type { Calls } from "./retry.js";

export interface ClientContext {
  readonly userId: string;
  readonly options: ClientOptions;
  readonly firestore: Firestore;
  readonly calls: Calls;
  readonly persistence: Persistence;
  readonly messages: MessageStore;
  /** Load the storage (idempotent). */
  load(): Promise<void>;
  isDisposed(): boolean;
  /** Started, loaded, not disposed and online: the network may be used. */
  canWork(): boolean;
  /** Something the snapshot or a chat view shows changed. */
  changed(): void;
  /** An error no caller awaits: to options.onError, unless disposed. */
  report(error: unknown): void;
}
