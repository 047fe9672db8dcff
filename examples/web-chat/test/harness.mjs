// What the browser tests (and the bench) share: the seeded suite, the app served on
// localhost, Debian's Chromium driven by playwright-core, and a person's page.
// Needs the emulator suite's environment (scripts/emulators exec).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
export const APP = resolve(here, "..");
export const ROOT = resolve(APP, "../..");
export const CHROMIUM = process.env.PACK427_CHROMIUM ?? "/usr/bin/chromium";

/** Where screenshots go: PACK427_WEB_SCREENSHOTS (docs to refresh the README's), else test-results/. */
export const SHOTS = resolve(ROOT, process.env.PACK427_WEB_SCREENSHOTS ?? "examples/web-chat/test-results");

/** Every page a person opened, so a timeout can show what each one showed. */
const openPages = new Map();

/**
 * Poll `probe` until it returns a truthy value; throws after `timeout` ms with what it last
 * saw, and with each open page's text and a screenshot (test-results/failure-*.png).
 */
export async function waitFor(probe, { timeout = 30_000, interval = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${JSON.stringify(last)})\n${await showPages(what)}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

async function showPages(what) {
  const shown = [];
  for (const [name, page] of openPages) {
    if (page.isClosed()) continue;
    const text = await page.evaluate(() => document.body?.innerText ?? "").catch(() => "(no page)");
    const file = join(SHOTS, `failure-${what.replace(/\W+/g, "-")}-${name.replace(/\W/g, "")}.png`);
    await page.screenshot({ path: file }).catch(() => undefined);
    shown.push(`--- ${name}'s page (${file}):\n${text.slice(0, 1500)}`);
    const uid = accountUids.get(name.split(" ")[0]);
    if (uid) shown.push(`--- ${name}'s inbox head in Firestore: ${await storedDocument(`users/${uid}/inboxHead/current`)}`);
  }
  return shown.join("\n");
}

/** Each seeded account's uid by name, for what a timeout shows. */
const accountUids = new Map();

/** A document as the Firestore emulator stores it (JSON), read with the emulator's owner access. */
async function storedDocument(path) {
  const host = process.env.FIRESTORE_EMULATOR_HOST;
  const project = process.env.GCLOUD_PROJECT ?? "demo-pack427";
  const url = `http://${host}/v1/projects/${project}/databases/(default)/documents/${path}`;
  try {
    const answer = await fetch(url, { headers: { Authorization: "Bearer owner" } });
    return (await answer.text()).replace(/\s+/g, " ").slice(0, 1500);
  } catch (error) {
    return `(not read: ${error.message})`;
  }
}

/** Seed the suite (cleared first), serve the app, start Chromium. */
export async function startWorld() {
  for (const name of ["FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST", "PACK427_FUNCTIONS_URL"]) {
    if (!process.env[name]) throw new Error(`${name} is not set: run under scripts/emulators exec (scripts/test does)`);
  }
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (scripts/setup does with CI=true)`);
  }
  if (!existsSync(join(APP, "dist", "index.html"))) throw new Error("examples/web-chat/dist is missing: npm run build");
  const configPath = join(mkdtempSync(join(tmpdir(), "pack427-web-test-")), "config.json");
  const seeded = spawnSync(join(ROOT, "functions/venv/bin/python"), [join(ROOT, "scripts/web_seed.py"), "seed", "--reset", "--config", configPath],
    { stdio: ["ignore", "inherit", "inherit"], cwd: ROOT });
  if (seeded.status !== 0) throw new Error(`seeding failed (${seeded.status})`);
  const config = JSON.parse(readFileSync(configPath, "utf8"));
  for (const account of config.accounts) accountUids.set(account.name, account.uid);
  const { server, url } = await serve({ dist: join(APP, "dist"), config });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI: Chromium's sandbox needs an unprivileged user.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  mkdirSync(SHOTS, { recursive: true });
  return {
    url,
    config,
    browser,
    async stop() {
      await browser.close();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A person in a browser window: a context of their own (storage, network), signed in. */
export async function person(world, name, { context, email } = {}) {
  const ctx = context ?? (await world.browser.newContext({ viewport: { width: 1100, height: 720 } }));
  const page = await ctx.newPage();
  openPages.set(openPages.has(name) ? `${name} ${openPages.size}` : name, page);
  page.on("pageerror", (error) => console.error(`[${name} page error]`, error.message));
  page.on("console", (message) => {
    // Offline on purpose is not news: the failed loads and Firestore's "could not reach" are expected.
    const text = message.text();
    if (message.type() === "error" && !/net::ERR_INTERNET_DISCONNECTED|Could not reach Cloud Firestore/.test(text)) {
      console.error(`[${name} console]`, text);
    }
  });
  try {
    await signIn(page, world.url, name, email);
  } catch (error) {
    // What the page showed instead: its text and a picture, for the failure's reader.
    const text = await page.evaluate(() => document.body?.innerText ?? "").catch(() => "(no page)");
    await page.screenshot({ path: join(SHOTS, `failure-sign-in-${name.replace(/\W/g, "")}.png`) }).catch(() => undefined);
    throw new Error(`${name} could not sign in: ${error.message}\npage text: ${text.slice(0, 500)}`);
  }
  return { name, page, context: ctx };
}

async function signIn(page, url, name, email) {
  await page.goto(url);
  if (email) {
    await page.getByRole("textbox", { name: "Email" }).fill(email);
    await page.getByLabel("Password", { exact: true }).fill("password123");
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
  } else {
    await page.getByRole("button", { name: `Sign in as ${name}` }).click();
  }
  await page.getByTestId("me").filter({ hasText: name }).waitFor({ timeout: 30_000 });
}

/** Open a chat from the chat list (its link's name starts with the chat's title). */
export async function openChat(page, title) {
  await page.getByRole("navigation", { name: "Chats" }).getByRole("link", { name: new RegExp(`^${title}`) }).click();
  await page.getByRole("heading", { name: title, level: 2 }).waitFor();
}

export async function send(page, text) {
  const composer = page.locator("#composer");
  await composer.fill(text);
  await composer.press("Enter");
}

/** The open chat's messages as shown: [{text, state}] (state: own messages only). */
export function messages(page) {
  return page.$$eval("ol.messages > li:has(.text)", (items) =>
    items.map((li) => ({ text: li.querySelector(".text")?.textContent ?? "", state: li.getAttribute("data-state") })));
}

/** How often each of `texts` is shown in the open chat. */
export async function counts(page, texts) {
  const shown = (await messages(page)).map((m) => m.text);
  return texts.map((t) => shown.filter((s) => s === t).length);
}

/** The unread badge of a chat in the list ("" when none) and the total. */
export async function badges(page, chatId) {
  return page.evaluate((id) => ({
    badge: document.querySelector(`.chat-list li[data-chat="${id}"] [data-testid="unread-badge"]`)?.textContent ?? "",
    total: document.querySelector('[data-testid="total-unread"]')?.textContent ?? "",
  }), chatId);
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `web-chat-${name}.png`) });
}
