// The offline shell: the app's own files (same origin, GET) from the network when it
// answers, else from this cache, so the page opens again while offline. The emulators
// (other origins) are never touched: the Firebase SDKs and the outbox deal with them.
const CACHE = "pack427-web-chat";

async function builtFiles() {
  const response = await fetch("/asset-manifest.json", { cache: "no-cache" });
  if (!response.ok) return [];
  const manifest = await response.json();
  const files = new Set();
  for (const chunk of Object.values(manifest)) {
    if (chunk.file) files.add(`/${chunk.file}`);
    for (const css of chunk.css ?? []) files.add(`/${css}`);
  }
  return [...files];
}

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(["/", "/config.json", ...(await builtFiles())]);
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(request);
      if (response.ok) await cache.put(request, response.clone());
      return response;
    } catch (error) {
      const cached = (await cache.match(request, { ignoreSearch: true })) ??
        (request.mode === "navigate" ? await cache.match("/") : undefined);
      if (cached) return cached;
      throw error;
    }
  })());
});
