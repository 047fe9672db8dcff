// The TypeScript client's bench (scripts/bench, section ts_client), on the emulator suite:
//   node client-ts/bench/latency.mjs MESSAGES   prints one JSON object
// 1. From sendMessage in one client to onMessagesReceived in another (the package as
//    built: dist/), interleaved message by message with the engine's own send-to-inbox
//    series: the callable called directly (httpsCallable), the entry seen by a bare
//    Firestore listener on the recipient's inbox. Same SDK, same machine, same moments.
// 2. The core's size, minified and gzipped, without firebase (esbuild, firebase external).
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { initializeApp } from "firebase/app";
import { connectAuthEmulator, createUserWithEmailAndPassword, getAuth } from "firebase/auth";
import { collection, connectFirestoreEmulator, getFirestore, onSnapshot } from "firebase/firestore";
import { connectFunctionsEmulator, getFunctions, httpsCallable } from "firebase/functions";
import { createClient, memoryStorage, ulid } from "../dist/index.js";

const messages = Number(process.argv[2] ?? 30);
const WARM_UP = 3;
const PER_SENDER = 50; // under the engine's 60 sends a minute per sender
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run under scripts/emulators exec`);
  return value;
};
const project = env("PACK427_PROJECT");
const firestoreHost = env("FIRESTORE_EMULATOR_HOST");
const authHost = env("FIREBASE_AUTH_EMULATOR_HOST");
const functionsUrl = new URL(env("PACK427_FUNCTIONS_URL"));
const documents = `http://${firestoreHost}/v1/projects/${project}/databases/(default)/documents`;

async function adminSet(path, fields) {
  const encoded = Object.fromEntries(Object.entries(fields).map(([k, v]) => [k,
    typeof v === "boolean" ? { booleanValue: v } : Array.isArray(v)
      ? { arrayValue: { values: v.map((s) => ({ stringValue: s })) } } : { stringValue: String(v) }]));
  const response = await fetch(`${documents}/${path}`, {
    method: "PATCH", headers: { Authorization: "Bearer owner", "Content-Type": "application/json" },
    body: JSON.stringify({ fields: encoded }),
  });
  if (!response.ok) throw new Error(`admin write ${path}: ${response.status}`);
}

let apps = 0;
async function user(label) {
  const app = initializeApp({ projectId: project, apiKey: "fake-api-key", appId: "1:1:web:1" }, `${label}-${apps++}`);
  connectAuthEmulator(getAuth(app), `http://${authHost}`, { disableWarnings: true });
  const db = getFirestore(app);
  const [host, port] = firestoreHost.split(":");
  connectFirestoreEmulator(db, host, Number(port));
  const functions = getFunctions(app, "us-central1");
  connectFunctionsEmulator(functions, functionsUrl.hostname, Number(functionsUrl.port));
  const credential = await createUserWithEmailAndPassword(getAuth(app), `bench-ts-${label}-${ulid().toLowerCase()}@example.com`, "password123");
  const uid = credential.user.uid;
  await adminSet(`users/${uid}`, { region: "EU", online: true, ageVerified18Plus: true, displayName: label });
  return { app, db, functions, uid };
}

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.round((p / 100) * (sorted.length - 1)))];
};
const summary = (values) => ({
  messages: values.length, samples_ms: values,
  p50_ms: percentile(values, 50), p95_ms: percentile(values, 95), p99_ms: percentile(values, 99),
  mean_ms: values.reduce((a, b) => a + b, 0) / values.length,
});

function arrivals() {
  const waiting = new Map();
  const seen = new Map();
  return {
    arrived(id, at) {
      if (seen.has(id)) return;
      seen.set(id, at);
      waiting.get(id)?.(at);
    },
    wait(id, timeoutMs = 120_000) {
      if (seen.has(id)) return Promise.resolve(seen.get(id));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${id} not delivered in ${timeoutMs} ms`)), timeoutMs);
        waiting.set(id, (at) => { clearTimeout(timer); resolve(at); });
      });
    },
  };
}

async function latency() {
  // The TypeScript clients' series.
  const clientRecipient = await user("ts-recipient");
  const received = arrivals();
  const recipient = createClient(clientRecipient.app, { userId: clientRecipient.uid, storage: memoryStorage() });
  recipient.onMessagesReceived((batch) => { const at = performance.now(); for (const m of batch) received.arrived(m.text, at); });
  await recipient.start();
  // The engine's own series: the callable, a bare listener on the inbox.
  const rawRecipient = await user("raw-recipient");
  const rawArrivals = arrivals();
  const unsubscribe = onSnapshot(collection(rawRecipient.db, "users", rawRecipient.uid, "inbox"), (snap) => {
    const at = performance.now();
    for (const change of snap.docChanges()) if (change.type === "added") rawArrivals.arrived(change.doc.id, at);
  });
  const series = { client: [], engine: [] };
  let sender = null;
  let rawSender = null;
  for (let n = 0; n < messages + WARM_UP; n += 1) {
    if (n % PER_SENDER === 0) {
      sender?.client.dispose();
      const s = await user("ts-sender");
      const chatId = `bench-ts-${ulid()}`;
      await adminSet(`chats/${chatId}`, { participants: [s.uid, clientRecipient.uid] });
      const client = createClient(s.app, { userId: s.uid, storage: memoryStorage() });
      await client.start();
      sender = { client, chatId };
      const r = await user("raw-sender");
      const rawChat = `bench-raw-${ulid()}`;
      await adminSet(`chats/${rawChat}`, { participants: [r.uid, rawRecipient.uid] });
      rawSender = { send: httpsCallable(r.functions, "pack427_sendMessage"), chatId: rawChat };
    }
    const text = `m${n}-${ulid()}`;
    const viaClient = async () => {
      const started = performance.now();
      await sender.client.send(sender.chatId, text);
      const arrived = await received.wait(text);
      if (n >= WARM_UP) series.client.push(arrived - started);
    };
    const viaEngine = async () => {
      const started = performance.now();
      const result = await rawSender.send({ chatId: rawSender.chatId, clientMessageId: ulid(), text });
      const arrived = await rawArrivals.wait(result.data.messageId);
      if (n >= WARM_UP) series.engine.push(arrived - started);
    };
    // Alternated, so that neither series always goes first.
    if (n % 2 === 0) {
      await viaClient();
      await viaEngine();
    } else {
      await viaEngine();
      await viaClient();
    }
  }
  unsubscribe();
  sender?.client.dispose();
  recipient.dispose();
  const client = summary(series.client);
  const engine = summary(series.engine);
  return { client, engine, ratio_p50: client.p50_ms / engine.p50_ms, ratio_p95: client.p95_ms / engine.p95_ms };
}

async function size() {
  const sizes = {};
  for (const [name, entry] of [["core", "index.js"], ["react", "react/index.js"]]) {
    const out = await build({
      entryPoints: [fileURLToPath(new URL(`../dist/${entry}`, import.meta.url))],
      bundle: true, minify: true, format: "esm", write: false, platform: "neutral",
      external: ["firebase", "firebase/*", "@firebase/*", "react", "react/*", "react-dom"],
    });
    const code = out.outputFiles[0].contents;
    sizes[name] = { minified_bytes: code.length, gzipped_bytes: gzipSync(code, { level: 9 }).length };
  }
  return sizes;
}

const started = performance.now();
const result = { size: await size(), latency: await latency() };
result.seconds = (performance.now() - started) / 1000;
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
