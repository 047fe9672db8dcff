// The emulator suite as the tests use it: users signed up in the Auth emulator, each
// device a Firebase app of its own (the official SDK, the user's own auth), and the
// chat core's documents written with admin access (REST, "Bearer owner").
import { deleteApp, initializeApp, type FirebaseApp } from "firebase/app";
import { connectAuthEmulator, createUserWithEmailAndPassword, getAuth, signInWithEmailAndPassword } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore, type Firestore } from "firebase/firestore";
import { connectFunctionsEmulator, getFunctions } from "firebase/functions";
import {
  createClient,
  firebaseInvoker,
  memoryStorage,
  NoAnswerError,
  type AppClientOptions,
  type CallableName,
  type Invoker,
  type Pack427Client,
} from "../src/index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run under scripts/emulators exec`);
  return value;
}

export const PROJECT = env("PACK427_PROJECT");
const FIRESTORE = env("FIRESTORE_EMULATOR_HOST");
const AUTH = env("FIREBASE_AUTH_EMULATOR_HOST");
const FUNCTIONS = new URL(env("PACK427_FUNCTIONS_URL"));

/** Fast back-off for tests (the defaults are for phones). */
export const TEST_RETRY = { baseDelayMs: 20, maxDelayMs: 500 } as const;

let serial = 0;
/** A name no other test (or run) uses. */
export function unique(prefix: string): string {
  serial += 1;
  return `${prefix}${Date.now().toString(36)}${serial}`;
}

const apps: FirebaseApp[] = [];

function hostPort(hostAndPort: string): [string, number] {
  const [host, port] = hostAndPort.split(":");
  return [host ?? "127.0.0.1", Number(port)];
}

/** A device: a Firebase app of its own on the emulators. */
export function deviceApp(label: string): { app: FirebaseApp; firestore: Firestore } {
  const app = initializeApp({ projectId: PROJECT, apiKey: "fake-api-key", appId: "1:1:web:1" }, unique(label));
  apps.push(app);
  connectAuthEmulator(getAuth(app), `http://${AUTH}`, { disableWarnings: true });
  const firestore = getFirestore(app);
  connectFirestoreEmulator(firestore, ...hostPort(FIRESTORE));
  connectFunctionsEmulator(getFunctions(app, "us-central1"), FUNCTIONS.hostname, Number(FUNCTIONS.port));
  return { app, firestore };
}

export interface TestUser {
  readonly uid: string;
  readonly email: string;
  readonly app: FirebaseApp;
  readonly firestore: Firestore;
}

export async function signUp(name: string): Promise<TestUser> {
  const { app, firestore } = deviceApp(name);
  const email = `${unique(name)}@example.com`;
  const credential = await createUserWithEmailAndPassword(getAuth(app), email, "password123");
  return { uid: credential.user.uid, email, app, firestore };
}

/** Another device of the same user: signed in on an app of its own. */
export async function signIn(user: TestUser, label: string): Promise<TestUser> {
  const { app, firestore } = deviceApp(label);
  await signInWithEmailAndPassword(getAuth(app), user.email, "password123");
  return { ...user, app, firestore };
}

export async function closeApps(): Promise<void> {
  await Promise.all(apps.splice(0).map((app) => deleteApp(app)));
}

export function invokerOf(user: TestUser): Invoker {
  return firebaseInvoker(getFunctions(user.app, "us-central1"));
}

export function clientOf(user: TestUser, options: Partial<AppClientOptions> = {}): Pack427Client {
  return createClient(user.app, {
    userId: user.uid,
    storage: memoryStorage(),
    retry: TEST_RETRY,
    onError: (error) => console.warn(`client of ${user.uid}:`, error),
    ...options,
  });
}

// ------------------------------------------------------------------ admin (the chat core)

type Value =
  | { stringValue: string }
  | { booleanValue: boolean }
  | { integerValue: string }
  | { arrayValue: { values?: Value[] } }
  | { mapValue: { fields: Record<string, Value> } }
  | { nullValue: null };

function encode(value: unknown): Value {
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { booleanValue: value };
  if (typeof value === "number") return { integerValue: String(value) };
  if (Array.isArray(value)) return { arrayValue: { values: value.map(encode) } };
  if (value !== null && typeof value === "object") {
    return { mapValue: { fields: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v)])) } };
  }
  return { nullValue: null };
}

const documentsUrl = `http://${FIRESTORE}/v1/projects/${PROJECT}/databases/(default)/documents`;
const ADMIN = { Authorization: "Bearer owner", "Content-Type": "application/json" };

export async function adminSet(path: string, data: Record<string, unknown>): Promise<void> {
  const fields = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, encode(v)]));
  const response = await fetch(`${documentsUrl}/${path}`, { method: "PATCH", headers: ADMIN, body: JSON.stringify({ fields }) });
  if (!response.ok) throw new Error(`admin write ${path}: ${response.status} ${await response.text()}`);
}

export async function adminDelete(path: string): Promise<void> {
  const response = await fetch(`${documentsUrl}/${path}`, { method: "DELETE", headers: ADMIN });
  if (!response.ok) throw new Error(`admin delete ${path}: ${response.status} ${await response.text()}`);
}

export type AdminDoc = { name: string; fields: Record<string, Record<string, unknown>> };

/** Every document of a collection (admin). */
export async function adminList(path: string): Promise<AdminDoc[]> {
  const docs: AdminDoc[] = [];
  let pageToken = "";
  for (;;) {
    const response = await fetch(`${documentsUrl}/${path}?pageSize=300${pageToken ? `&pageToken=${pageToken}` : ""}`, { headers: ADMIN });
    if (!response.ok) throw new Error(`admin list ${path}: ${response.status}`);
    const body = (await response.json()) as { documents?: AdminDoc[]; nextPageToken?: string };
    docs.push(...(body.documents ?? []));
    if (!body.nextPageToken) return docs;
    pageToken = body.nextPageToken;
  }
}

export async function adminGet(path: string): Promise<AdminDoc | null> {
  const response = await fetch(`${documentsUrl}/${path}`, { headers: ADMIN });
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`admin get ${path}: ${response.status}`);
  return (await response.json()) as AdminDoc;
}

export function field(doc: AdminDoc, name: string): string | null {
  const value = doc.fields[name];
  if (!value) return null;
  const inner = value["stringValue"] ?? value["integerValue"];
  return typeof inner === "string" ? inner : null;
}

/** users/{uid} as the chat core keeps it (age-verified unless told). */
export async function makeUser(uid: string, data: Record<string, unknown> = {}): Promise<void> {
  await adminSet(`users/${uid}`, { region: "EU", online: true, displayName: uid, ageVerified18Plus: true, ...data });
}

export async function makeChat(chatId: string, participants: string[]): Promise<void> {
  await adminSet(`chats/${chatId}`, { participants });
}

/** The user's inbox entries (admin), in seq order. */
export async function inbox(uid: string): Promise<{ messageId: string; chatId: string; text: string | null }[]> {
  const docs = await adminList(`users/${uid}/inbox`);
  return docs
    .map((d) => ({ seq: Number(field(d, "seq")), messageId: field(d, "messageId") ?? "", chatId: field(d, "chatId") ?? "", text: field(d, "text") }))
    .sort((a, b) => a.seq - b.seq)
    .map(({ messageId, chatId, text }) => ({ messageId, chatId, text }));
}

// ------------------------------------------------------------------ waiting, faults

/** Wait until `check` returns a value other than undefined/false; fails with `what` at the deadline. */
export async function waitFor<T>(what: string | (() => string), check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${typeof what === "string" ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A deterministic random source (mulberry32). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FaultyInvoker {
  readonly invoker: Invoker;
  readonly lostBefore: number;
  readonly lostAfter: number;
  readonly calls: number;
}

/**
 * Loses `rate` of the calls: half before they reach the server, half after it
 * answered (the reply is lost, the call took effect). Either way the caller sees no answer.
 */
export function faulty(inner: Invoker, rate: number, random: () => number): FaultyInvoker {
  const stats = { lostBefore: 0, lostAfter: 0, calls: 0 };
  const invoker: Invoker = async (name, data) => {
    stats.calls += 1;
    const r = random();
    if (r < rate / 2) {
      stats.lostBefore += 1;
      throw new NoAnswerError("lost before the server");
    }
    const result = await inner(name, data);
    if (r < rate) {
      stats.lostAfter += 1;
      throw new NoAnswerError("reply lost");
    }
    return result;
  };
  return Object.assign(stats, { invoker }) as FaultyInvoker & typeof stats;
}

/** Records every call (name and data) on its way to `inner`. */
export function recording(inner: Invoker): { invoker: Invoker; calls: { name: CallableName; data: unknown }[] } {
  const calls: { name: CallableName; data: unknown }[] = [];
  return {
    calls,
    invoker: async (name, data) => {
      calls.push({ name, data });
      return inner(name, data);
    },
  };
}
