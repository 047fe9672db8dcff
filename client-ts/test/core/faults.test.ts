// 200 messages through a transport that loses 30% of the calls, before or after
// the server, on the senders' and the recipient's side: none lost, none twice, none out of order.
import { afterEach, expect, it } from "vitest";
import { manualConnectivity, type StoredMessage } from "../../src/index.js";
import { clientOf, closeApps, faulty, inbox, invokerOf, makeChat, makeUser, seeded, signUp, unique, waitFor, type TestUser } from "../support.js";

afterEach(closeApps);

const SENDERS = 4; // 50 each: under the engine's 60 sends a minute per user
const PER_SENDER = 50;

it("delivers 200 messages through 30% lost calls: 0 lost, 0 duplicated, 0 out of order", async () => {
  const bob = await signUp("bob");
  await makeUser(bob.uid);
  const senders: { user: TestUser; chatId: string }[] = [];
  for (let s = 0; s < SENDERS; s += 1) {
    const user = await signUp(`s${s}`);
    await makeUser(user.uid);
    const chatId = unique(`f${s}`);
    await makeChat(chatId, [user.uid, bob.uid]);
    senders.push({ user, chatId });
  }
  const random = seeded(Number(process.env["PACK427_FAULT_SEED"] ?? 427));
  const bobFaults = faulty(invokerOf(bob), 0.3, random);
  const received: StoredMessage[] = [];
  const bobNet = manualConnectivity(true);
  const bobClient = clientOf(bob, { invoker: bobFaults.invoker, connectivity: bobNet });
  bobClient.onMessagesReceived((messages) => received.push(...messages));
  await bobClient.start();

  const faults = senders.map(({ user }) => faulty(invokerOf(user), 0.3, random));
  const clients = senders.map(({ user }, s) => clientOf(user, { invoker: faults[s]?.invoker }));
  await Promise.all(clients.map((c) => c.start()));
  // Every message written at once (as a user typing fast offline would), sent one at a time per sender.
  await Promise.all(clients.map(async (client, s) => {
    const chatId = senders[s]?.chatId ?? "";
    for (let i = 0; i < PER_SENDER; i += 1) await client.send(chatId, `s${s}-${i}`);
  }));
  // Bob's phone drops off the network for a while in the middle: what arrives then comes by sync.
  await waitFor("bob to have 60", () => received.length >= 60, 200_000);
  bobNet.set(false);
  await waitFor("more to arrive for bob meanwhile", async () => (await inbox(bob.uid)).length >= received.length + 20, 200_000);
  bobNet.set(true);
  await waitFor("every outbox to empty", () => clients.every((c, s) => c.chatView(senders[s]?.chatId ?? "").queuedMessages.length === 0), 200_000);
  await waitFor("bob to have 200", () => received.length >= SENDERS * PER_SENDER, 120_000);
  await bobClient.syncMessages(); // anything else there would show now

  const expected = senders.map((_, s) => Array.from({ length: PER_SENDER }, (_, i) => `s${s}-${i}`));
  for (const [s, { chatId }] of senders.entries()) {
    // Per chat, in the order written: received (callbacks), stored, and in the engine's inbox.
    expect(received.filter((m) => m.chatId === chatId).map((m) => m.text)).toEqual(expected[s]);
    expect(bobClient.storedMessages(chatId).map((m) => m.text)).toEqual(expected[s]);
    expect(clients[s]?.chatView(chatId).messages.map((m) => m.text)).toEqual(expected[s]);
    expect(clients[s]?.chatView(chatId).failedMessagesCount).toBe(0);
  }
  const engineInbox = await inbox(bob.uid);
  expect(engineInbox).toHaveLength(SENDERS * PER_SENDER);
  expect(new Set(engineInbox.map((m) => m.messageId)).size).toBe(SENDERS * PER_SENDER);
  expect(new Set(received.map((m) => m.messageId)).size).toBe(received.length);
  // The faults happened, on both sides of the server.
  const all = [bobFaults, ...faults];
  expect(all.reduce((n, f) => n + f.lostBefore, 0)).toBeGreaterThan(20);
  expect(all.reduce((n, f) => n + f.lostAfter, 0)).toBeGreaterThan(20);
  for (const c of [...clients, bobClient]) c.dispose();
});
