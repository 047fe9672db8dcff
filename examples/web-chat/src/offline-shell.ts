// A service worker keeps the app's own files, so that the page opens again while offline
// (the outbox is in IndexedDB; this is what lets a reload show it).
import { useSyncExternalStore } from "react";

let ready = false;
const listeners = new Set<() => void>();

function setReady(): void {
  if (ready) return;
  ready = true;
  for (const listener of [...listeners]) listener();
}

export function registerOfflineShell(): void {
  if (!import.meta.env.PROD || !("serviceWorker" in navigator)) return;
  const sw = navigator.serviceWorker;
  if (sw.controller) setReady();
  sw.addEventListener("controllerchange", () => {
    if (sw.controller) setReady();
  });
  sw.register("/sw.js").catch((error: unknown) => console.warn("offline shell:", error));
}

/** True once a service worker serves this page (it can be reloaded offline). */
export function useOfflineShellReady(): boolean {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => ready,
  );
}
