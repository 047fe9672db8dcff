// What the client keeps in its StorageAdapter, under "pack427/{uid}/": the outbox, the
// sync state, the chat IDs and each chat's messages. Changes mark their key dirty;
// persist() writes the dirty keys one write at a time, in an order that keeps the storage
// consistent if the app is killed between two writes.
import type { StorageAdapter } from "./storage.js";

/** The persisted keys: "outbox", "sync", "chats" and "chat/{chatId}". */
export interface Persistence {
  read<T>(key: string): Promise<T | null>;
  markDirty(key: string): void;
  /**
   * Write what changed, in order: chats first, then the sync position and the outbox, so
   * neither the cursor past a message nor an outbox without an accepted message is ever
   * stored before the message itself.
   */
  persist(): Promise<void>;
}

/** `valueOf` gives a key's current value, as it is to be written. */
export function createPersistence(storage: StorageAdapter, prefix: string, valueOf: (key: string) => unknown): Persistence {
  let chain: Promise<void> = Promise.resolve();
  const dirty = new Set<string>();
  return {
    async read<T>(key: string): Promise<T | null> {
      const raw = await storage.getItem(`${prefix}/${key}`);
      return raw === null ? null : (JSON.parse(raw) as T);
    },
    markDirty(key) {
      dirty.add(key);
    },
    persist() {
      chain = chain.then(async () => {
        const keys = [...dirty].sort((a, b) => rank(a) - rank(b));
        dirty.clear();
        for (const key of keys) {
          await storage.setItem(`${prefix}/${key}`, JSON.stringify(valueOf(key)));
        }
      });
      return chain;
    },
  };
}

function rank(key: string): number {
  return key.startsWith("chat/") ? 0 : key === "chats" ? 1 : key === "sync" ? 2 : 3;
}
