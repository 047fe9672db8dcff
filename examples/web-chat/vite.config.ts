import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The app is static: dist/ is served by server.mjs, which adds /config.json
// (the emulators' addresses and the demo accounts, written by scripts/web).
export default defineConfig({
  plugins: [react()],
  // manifest: the service worker (public/sw.js) reads it to keep every built file for offline use.
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, manifest: "asset-manifest.json",
    // The Firebase SDKs are most of it (about 200 kB gzipped); one chunk is fine for a demo.
    chunkSizeWarningLimit: 800 },
  // One copy of the Firebase SDK for the app and the package (its peer dependency).
  resolve: { dedupe: ["firebase", "react", "react-dom"] },
});
