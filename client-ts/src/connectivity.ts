// Whether the device is online, from a pluggable source.

export interface Connectivity {
  /** The current state (true until a source knows better). */
  isOnline(): boolean;
  /** Called on every change; returns the unsubscribe function. */
  subscribe(listener: (online: boolean) => void): () => void;
}

/** Always online: the client still copes with calls that get no answer. */
export function alwaysOnline(): Connectivity {
  return { isOnline: () => true, subscribe: () => () => undefined };
}

/** Set by hand (tests, or an app with its own notion of connectivity). */
export function manualConnectivity(initial = true): Connectivity & { set(online: boolean): void } {
  let online = initial;
  const listeners = new Set<(online: boolean) => void>();
  return {
    isOnline: () => online,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    set(next) {
      if (next === online) return;
      online = next;
      for (const listener of [...listeners]) listener(next);
    },
  };
}

interface OnlineEventTarget {
  addEventListener(type: "online" | "offline", listener: () => void): void;
  removeEventListener(type: "online" | "offline", listener: () => void): void;
}

/** The browser's online/offline events and navigator.onLine. */
export function browserConnectivity(
  target: OnlineEventTarget = globalThis as unknown as OnlineEventTarget,
  navigatorLike: { onLine: boolean } | undefined = globalThis.navigator,
): Connectivity {
  return {
    isOnline: () => navigatorLike?.onLine ?? true,
    subscribe(listener) {
      const online = () => listener(true);
      const offline = () => listener(false);
      target.addEventListener("online", online);
      target.addEventListener("offline", offline);
      return () => {
        target.removeEventListener("online", online);
        target.removeEventListener("offline", offline);
      };
    },
  };
}

/** The parts of @react-native-community/netinfo's state this client reads. */
export interface NetInfoStateLike {
  isConnected: boolean | null;
  isInternetReachable?: boolean | null;
}

/** A NetInfo-shaped object (React Native: `import NetInfo from "@react-native-community/netinfo"`). */
export interface NetInfoLike {
  addEventListener(listener: (state: NetInfoStateLike) => void): () => void;
}

export function netInfoConnectivity(netInfo: NetInfoLike): Connectivity {
  let online = true;
  const listeners = new Set<(online: boolean) => void>();
  let unsubscribe: (() => void) | null = null;
  const onState = (state: NetInfoStateLike) => {
    // Unknown (null) counts as online: calls that get no answer are retried anyway.
    const next = state.isConnected !== false && state.isInternetReachable !== false;
    if (next === online) return;
    online = next;
    for (const listener of [...listeners]) listener(next);
  };
  return {
    isOnline: () => online,
    subscribe(listener) {
      listeners.add(listener);
      unsubscribe ??= netInfo.addEventListener(onState);
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0 && unsubscribe) {
          unsubscribe();
          unsubscribe = null;
        }
      };
    },
  };
}
