// The outbox: written offline and resumed by a new client on the same storage;
// a refusal for good fails the message, and retryFailed sends it again with its clientMessageId.
import { afterEach, describe, expect, it } from "vitest";
import { manualConnectivity, memoryStorage, type StoredMessage } from "../../src/index.js";
import {
  adminGet,
  clientOf,
  closeApps,
  inbox,
  invokerOf,
  makeChat,
  makeUser,
  recording,
  signUp,
  unique,
  waitFor,
} from "../support.js";

afterEach(closeApps);

describe("outbox", () => {
  it("delivers three messages written offline once each, in order, after the app was killed", async () => {
    const alice = await signUp("alice");
    const bob = await signUp("bob");
    await makeUser(alice.uid);
    await makeUser(bob.uid);
    const chatId = unique("ab");
    await makeChat(chatId, [alice.uid, bob.uid]);

    const received: StoredMessage[] = [];
    const bobClient = clientOf(bob);
    bobClient.onMessagesReceived((messages) => received.push(...messages));
    await bobClient.start();

    const storage = memoryStorage();
    const offline = manualConnectivity(false);
    const first = clientOf(alice, { storage, connectivity: offline });
    await first.start();
    const written = [];
    for (const text of ["one", "two", "three"]) written.push(await first.send(chatId, text));
    expect(first.chatView(chatId).queuedMessages.map((m) => m.text)).toEqual(["one", "two", "three"]);
    first.dispose(); // the app is killed

    const sends = recording(invokerOf(alice));
    const second = clientOf(alice, { storage, invoker: sends.invoker });
    await second.start();
    await waitFor("the outbox to empty", () => second.chatView(chatId).queuedMessages.length === 0);
    await waitFor("bob to receive three", () => received.length >= 3);

    expect(received.map((m) => m.text)).toEqual(["one", "two", "three"]);
    expect((await inbox(bob.uid)).map((m) => m.text)).toEqual(["one", "two", "three"]);
    // The resumed client sent each with the clientMessageId it was written with, oldest first.
    const sent = sends.calls.filter((c) => c.name === "pack427_sendMessage").map((c) => (c.data as { clientMessageId: string }).clientMessageId);
    expect(sent).toEqual(written.map((m) => m.clientMessageId));
    expect(second.chatView(chatId).messages.map((m) => [m.text, m.state])).toEqual([
      ["one", "sent"], ["two", "sent"], ["three", "sent"],
    ]);
    second.dispose();
    bobClient.dispose();
  });

  it("counts a refused (blocked) send as failed, and retryFailed resends it with its clientMessageId", async () => {
    const alice = await signUp("alice");
    const bob = await signUp("bob");
    await makeUser(alice.uid);
    await makeUser(bob.uid, { blockedUsers: [alice.uid] });
    const chatId = unique("ab");
    await makeChat(chatId, [alice.uid, bob.uid]);

    const sends = recording(invokerOf(alice));
    const client = clientOf(alice, { invoker: sends.invoker });
    await client.start();
    const message = await client.send(chatId, "let me in");
    await waitFor("the send to fail", () => client.chatView(chatId).failedMessagesCount === 1);
    const failed = client.chatView(chatId).messages.at(-1);
    expect(failed?.state).toBe("failed");
    expect(failed?.error).toContain("failed-precondition");
    expect(await inbox(bob.uid)).toEqual([]);

    const next = await client.send(chatId, "still blocked"); // the next one goes on; refused as well
    await waitFor("the second to fail", () => client.chatView(chatId).failedMessagesCount === 2);

    await makeUser(bob.uid, { blockedUsers: [] });
    expect(await client.retryFailed(chatId)).toBe(2);
    await waitFor("both to be accepted", () => client.chatView(chatId).messages.every((m) => m.state === "sent") && client.chatView(chatId).messages.length === 2);
    expect(client.chatView(chatId).failedMessagesCount).toBe(0);
    expect((await inbox(bob.uid)).map((m) => m.text)).toEqual(["let me in", "still blocked"]);
    const ids = sends.calls.filter((c) => c.name === "pack427_sendMessage").map((c) => (c.data as { clientMessageId: string }).clientMessageId);
    expect(ids).toEqual([message.clientMessageId, next.clientMessageId, message.clientMessageId, next.clientMessageId]);
    // The engine's idempotency record for the retried send is under the original clientMessageId.
    expect(await adminGet(`idempotencyKeys/${alice.uid}_${message.clientMessageId}`)).not.toBeNull();
    client.dispose();
  });
});
