// Serves the built app (dist/) on localhost, and /config.json: the emulators' addresses
// and the demo accounts (from the file named by PACK427_WEB_CONFIG). No dependencies.
//   node server.mjs [PORT]     (0 or nothing: a free port; the address is printed)
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/** Start the server; resolves with {server, url}. */
export async function serve({ dist, config, port = 0, host = "127.0.0.1" }) {
  const root = resolve(dist);
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      if (path === "/config.json") {
        res.writeHead(200, { "content-type": TYPES[".json"], "cache-control": "no-cache" });
        res.end(JSON.stringify(config));
        return;
      }
      let file = normalize(join(root, path));
      if (!file.startsWith(root)) {
        res.writeHead(403).end();
        return;
      }
      const info = await stat(file).catch(() => null);
      if (!info || info.isDirectory()) file = join(root, "index.html");
      const body = await readFile(file);
      const cache = path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache";
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": cache });
      res.end(body);
    } catch (error) {
      res.writeHead(500, { "content-type": "text/plain" }).end(String(error));
    }
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, ok);
  });
  const address = server.address();
  return { server, url: `http://127.0.0.1:${address.port}` };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const configPath = process.env.PACK427_WEB_CONFIG;
  if (!configPath) {
    console.error("server.mjs: set PACK427_WEB_CONFIG to the app's config.json (scripts/web does)");
    process.exit(2);
  }
  const config = JSON.parse(await readFile(configPath, "utf8"));
  const here = fileURLToPath(new URL(".", import.meta.url));
  const { url } = await serve({ dist: join(here, "dist"), config, port: Number(process.argv[2] ?? 0) });
  console.log(`web-chat: serving on ${url}`);
}
