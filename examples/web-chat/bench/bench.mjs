// The web chat in the real browser (Debian's Chromium), on the bench's emulator suite:
//   - first render of the chat list after sign-in: from the click on "Sign in as Ann" in a
//     fresh window (no storage, no cache) until her four chats are listed;
//   - send to render: from the Send in Ann's window until the message is on Bea's page.
// Both timed inside the pages (performance.timeOrigin + performance.now(): one clock for the
// two pages of one browser). Prints one JSON line. Run by scripts/bench (section web_chat).
//   node bench/bench.mjs [SIGN_INS] [MESSAGES]
import { openChat, person, startWorld, waitFor } from "../test/harness.mjs";

const signIns = Number(process.argv[2] ?? 10);
const messageCount = Number(process.argv[3] ?? 30);

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
  return { n: sorted.length, p50_ms: at(0.5), p95_ms: at(0.95), max_ms: sorted[sorted.length - 1], samples_ms: samples };
}

const world = await startWorld();
try {
  const firstRender = [];
  for (let i = 0; i < signIns; i += 1) {
    const context = await world.browser.newContext({ viewport: { width: 1100, height: 720 } });
    const page = await context.newPage();
    await page.goto(world.url);
    await page.getByRole("button", { name: "Sign in as Ann" }).waitFor();
    const ms = await page.evaluate(() => new Promise((resolve) => {
      const button = [...document.querySelectorAll("button")].find((b) => b.textContent === "Sign in as Ann");
      const listed = () => document.querySelectorAll(".chat-list li[data-chat]").length >= 4;
      const started = performance.now();
      const observer = new MutationObserver(() => {
        if (listed()) {
          observer.disconnect();
          resolve(performance.now() - started);
        }
      });
      observer.observe(document.body, { subtree: true, childList: true });
      button.click();
    }));
    firstRender.push(ms);
    await context.close();
  }

  const ann = await person(world, "Ann");
  const bea = await person(world, "Bea");
  await openChat(ann.page, "Ann and Bea");
  await openChat(bea.page, "Ann and Bea");
  await bea.page.evaluate(() => {
    window.__seen = {};
    new MutationObserver(() => {
      const now = performance.timeOrigin + performance.now();
      for (const el of document.querySelectorAll("ol.messages > li .text")) {
        const text = el.textContent ?? "";
        if (!(text in window.__seen)) window.__seen[text] = now;
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  const sendToRender = [];
  for (let i = 0; i < messageCount; i += 1) {
    const text = `bench message ${i}`;
    await ann.page.locator("#composer").fill(text);
    const sentAt = await ann.page.evaluate(() => {
      const at = performance.timeOrigin + performance.now();
      document.querySelector("form.composer").requestSubmit();
      return at;
    });
    const seenAt = await waitFor(() => bea.page.evaluate((t) => window.__seen[t] ?? 0, text),
      { timeout: 30_000, interval: 20, what: `${text} on Bea's page` });
    sendToRender.push(seenAt - sentAt);
  }
  const version = world.browser.version();
  console.log(JSON.stringify({
    browser: `Chromium ${version} (headless)`,
    first_render: summary(firstRender),
    send_to_render: summary(sendToRender),
  }));
} finally {
  await world.stop();
}
