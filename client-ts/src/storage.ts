// Where a device keeps its outbox, its messages and its sync position.

/** Any AsyncStorage-shaped object: React Native's AsyncStorage, or the adapters below. */
export interface StorageAdapter {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
  removeItem(key: string): Promise<void>;
}

/** Kept in memory only: gone with the process (tests, or a client that must not persist). */
export function memoryStorage(): StorageAdapter & { readonly data: Map<string, string> } {
  const data = new Map<string, string>();
  return {
    data,
    getItem: async (key) => data.get(key) ?? null,
    setItem: async (key, value) => {
      data.set(key, value);
    },
    removeItem: async (key) => {
      data.delete(key);
    },
  };
}

/** A Web Storage object (window.localStorage by default). */
export function webStorage(storage: Storage = globalThis.localStorage): StorageAdapter {
  return {
    getItem: async (key) => storage.getItem(key),
    setItem: async (key, value) => storage.setItem(key, value),
    removeItem: async (key) => storage.removeItem(key),
  };
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** IndexedDB (a database of one object store), for web apps that outgrow localStorage. */
export function indexedDbStorage(name = "pack427", factory: IDBFactory = globalThis.indexedDB): StorageAdapter {
  let db: Promise<IDBDatabase> | null = null;
  const open = (): Promise<IDBDatabase> => {
    db ??= new Promise((resolve, reject) => {
      const req = factory.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore("kv");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return db;
  };
  const store = async (mode: IDBTransactionMode): Promise<IDBObjectStore> =>
    (await open()).transaction("kv", mode).objectStore("kv");
  return {
    getItem: async (key) => {
      const value: unknown = await request((await store("readonly")).get(key));
      return typeof value === "string" ? value : null;
    },
    setItem: async (key, value) => {
      await request((await store("readwrite")).put(value, key));
    },
    removeItem: async (key) => {
      await request((await store("readwrite")).delete(key));
    },
  };
}
