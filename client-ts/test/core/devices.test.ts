// Two devices of one user; unread counts against a recount of the inbox; and the
// listeners' view of other users' data (firestore.rules).
import { collection, doc, onSnapshot, type Firestore } from "firebase/firestore";
import { afterEach, expect, it } from "vitest";
import { manualConnectivity, type StoredMessage, type SyncMessagesResult } from "../../src/index.js";
import {
  adminGet,
  adminList,
  clientOf,
  closeApps,
  field,
  invokerOf,
  makeChat,
  makeUser,
  signIn,
  signUp,
  unique,
  waitFor,
  type TestUser,
} from "../support.js";

afterEach(closeApps);

function watchSyncs(user: TestUser) {
  const synced: string[] = [];
  const inner = invokerOf(user);
  return {
    synced,
    invoker: async (name: Parameters<typeof inner>[0], data: unknown) => {
      const result = await inner(name, data);
      if (name === "pack427_syncMessages") synced.push(...(result as SyncMessagesResult).messages.map((m) => m.messageId));
      return result;
    },
  };
}

it("gives each of two devices every message, live and after a gap through sync, none twice", async () => {
  const alice = await signUp("alice");
  const bobPhone = await signUp("bob");
  const bobLaptop = await signIn(bobPhone, "bob-laptop");
  await makeUser(alice.uid);
  await makeUser(bobPhone.uid);
  const chatId = unique("ab");
  await makeChat(chatId, [alice.uid, bobPhone.uid]);

  const phoneSyncs = watchSyncs(bobPhone);
  const laptopSyncs = watchSyncs(bobLaptop);
  const laptopNet = manualConnectivity(true);
  const phone = clientOf(bobPhone, { invoker: phoneSyncs.invoker, deviceId: "phone" });
  const laptop = clientOf(bobLaptop, { invoker: laptopSyncs.invoker, deviceId: "laptop", connectivity: laptopNet });
  const got = { phone: [] as StoredMessage[], laptop: [] as StoredMessage[] };
  const syncs = { phone: 0, laptop: 0 };
  phone.onSyncComplete(() => (syncs.phone += 1));
  laptop.onSyncComplete(() => (syncs.laptop += 1));
  phone.onMessagesReceived((m) => got.phone.push(...m));
  laptop.onMessagesReceived((m) => got.laptop.push(...m));
  await Promise.all([phone.start(), laptop.start()]);
  await waitFor("both devices' first sync", () => syncs.phone >= 1 && syncs.laptop >= 1);

  const sender = clientOf(alice);
  await sender.start();
  for (const text of ["live 1", "live 2", "live 3"]) await sender.send(chatId, text);
  await waitFor("both to get the live ones", () => got.phone.length >= 3 && got.laptop.length >= 3);
  // The receivers can have the third before the sender has handled its answer.
  await waitFor("the sender to store its three", () => sender.storedMessages(chatId).length >= 3);
  const live = sender.storedMessages(chatId).map((m) => m.messageId);
  expect(live).toHaveLength(3);
  // Through the listeners: no sync page carried them.
  expect(phoneSyncs.synced.filter((id) => live.includes(id))).toEqual([]);
  expect(laptopSyncs.synced.filter((id) => live.includes(id))).toEqual([]);

  laptopNet.set(false); // the laptop goes offline: its listeners are removed
  for (const text of ["gap 1", "gap 2", "gap 3"]) await sender.send(chatId, text);
  await waitFor("the phone to get the gap live", () => got.phone.length >= 6);
  expect(got.laptop).toHaveLength(3);
  laptopNet.set(true); // back online: sync from the stored cursor
  await waitFor("the laptop to catch up", () => got.laptop.length >= 6);
  const all = sender.storedMessages(chatId).map((m) => m.messageId);
  const gap = all.slice(3);
  expect(gap.every((id) => laptopSyncs.synced.includes(id))).toBe(true);

  const texts = ["live 1", "live 2", "live 3", "gap 1", "gap 2", "gap 3"];
  await laptop.syncMessages(); // a further sync brings nothing twice
  expect(got.phone.map((m) => m.text)).toEqual(texts);
  expect(got.laptop.map((m) => m.text)).toEqual(texts);
  expect(laptop.storedMessages(chatId).map((m) => m.messageId)).toEqual(all);
  expect(phone.storedMessages(chatId).map((m) => m.messageId)).toEqual(all);
  for (const c of [phone, laptop, sender]) c.dispose();
});

/** Unread per chat as the inbox says: the user's entries after the read receipt's position. */
async function recount(uid: string, chatIds: string[]): Promise<Record<string, number>> {
  const entries = await adminList(`users/${uid}/inbox`);
  const counts: Record<string, number> = {};
  for (const chatId of chatIds) {
    const receipt = await adminGet(`chats/${chatId}/readReceipts/${uid}`);
    const upTo = receipt ? field(receipt, "readUpToMessageId") ?? "" : "";
    const n = entries.filter((e) => field(e, "chatId") === chatId && (field(e, "messageId") ?? "") > upTo).length;
    if (n) counts[chatId] = n;
  }
  return counts;
}

function counts(client: ReturnType<typeof clientOf>): Record<string, number> {
  return Object.fromEntries(Object.entries(client.getSnapshot().unread).filter(([, c]) => c.unread > 0).map(([id, c]) => [id, c.unread]).sort());
}

const sorted = (c: Record<string, number>) => JSON.stringify(Object.entries(c).sort());

it("shows the same unread counts on two devices as a recount of the inbox, after reads on either", async () => {
  const alice = await signUp("alice");
  const carol = await signUp("carol");
  const bobPhone = await signUp("bob");
  const bobLaptop = await signIn(bobPhone, "bob-laptop");
  for (const u of [alice, carol, bobPhone]) await makeUser(u.uid);
  const ab = unique("ab");
  const cb = unique("cb");
  await makeChat(ab, [alice.uid, bobPhone.uid]);
  await makeChat(cb, [carol.uid, bobPhone.uid]);
  const phone = clientOf(bobPhone, { deviceId: "phone" });
  const laptop = clientOf(bobLaptop, { deviceId: "laptop" });
  await Promise.all([phone.start(), laptop.start()]);
  const fromAlice = clientOf(alice);
  const fromCarol = clientOf(carol);
  await Promise.all([fromAlice.start(), fromCarol.start()]);
  for (let i = 0; i < 4; i += 1) await fromAlice.send(ab, `a${i}`);
  for (let i = 0; i < 2; i += 1) await fromCarol.send(cb, `c${i}`);
  await waitFor("sent", () => fromAlice.storedMessages(ab).length === 4 && fromCarol.storedMessages(cb).length === 2);

  const agree = async (what: string, expected: Record<string, number>) => {
    // (A send that raced another for Bob's inbox head is delivered by the queue's trigger, a moment later.)
    await waitFor(`the inbox to hold ${sorted(expected)}`, async () => sorted(await recount(bobPhone.uid, [ab, cb])) === sorted(expected));
    await waitFor(() => `${what}: phone ${JSON.stringify(counts(phone))}, laptop ${JSON.stringify(counts(laptop))}, expected ${JSON.stringify(expected)}`, () => sorted(counts(phone)) === sorted(expected) && sorted(counts(laptop)) === sorted(expected));
    expect(phone.getSnapshot().totalUnread).toBe(Object.values(expected).reduce((a, b) => a + b, 0));
    expect(laptop.getSnapshot().totalUnread).toBe(phone.getSnapshot().totalUnread);
  };
  await agree("both devices to count everything", { [ab]: 4, [cb]: 2 });

  const second = fromAlice.storedMessages(ab)[1]?.messageId ?? "";
  expect(await phone.markAsRead(ab, second)).toBe(2); // read on the phone...
  await agree("the laptop to see the phone's read", { [ab]: 2, [cb]: 2 });
  await waitFor("the laptop to have the messages", () => laptop.storedMessages(ab).length === 4);
  expect(await laptop.markChatAsRead(cb)).toBe(0); // ...and on the laptop
  await agree("the phone to see the laptop's read", { [ab]: 2 });
  // The laptop shows the first two of Alice's messages read, the others delivered.
  await waitFor("states", () => laptop.chatView(ab).messages.map((m) => m.state).join() === "read,read,delivered,delivered");
  // Alice sees which of hers Bob read (his read receipt).
  const release = fromAlice.watchReceipts(ab);
  await waitFor("alice to see bob's read", () => fromAlice.chatView(ab).messages.map((m) => m.state).join() === "read,read,sent,sent");
  release();
  expect(await phone.refreshUnreadCounts()).toEqual({ [ab]: 2 });
  for (const c of [phone, laptop, fromAlice, fromCarol]) c.dispose();
});

function listenError(db: Firestore, target: "inbox" | "head" | "receipts", uid: string, chatId: string): Promise<string> {
  return new Promise((resolve) => {
    const ref = target === "inbox" ? collection(db, "users", uid, "inbox")
      : target === "receipts" ? collection(db, "chats", chatId, "readReceipts") : doc(db, "users", uid, "inboxHead", "current");
    const unsub = (onSnapshot as (r: typeof ref, next: () => void, error: (e: { code: string }) => void) => () => void)(
      ref, () => resolve("delivered data"), (e) => resolve(e.code));
    void unsub;
  });
}

it("shows a user's listeners nothing of another user's data (rules)", async () => {
  const carol = await signUp("carol");
  const dave = await signUp("dave");
  const bob = await signUp("bob");
  for (const u of [carol, dave, bob]) await makeUser(u.uid);
  const cd = unique("cd");
  await makeChat(cd, [carol.uid, dave.uid]);
  const errors: unknown[] = [];
  const bobClient = clientOf(bob, { onError: (e) => errors.push(e) });
  await bobClient.start();
  const releaseTyping = bobClient.watchTyping(cd); // names a chat Bob is not in
  const carolClient = clientOf(carol);
  await carolClient.start();
  const daveClient = clientOf(dave);
  await daveClient.start();
  const seenByDave: StoredMessage[] = [];
  daveClient.onMessagesReceived((m) => seenByDave.push(...m));
  await carolClient.send(cd, "for dave only");
  await carolClient.request("pack427_updateTypingState", { chatId: cd, isTyping: true });
  await daveClient.markChatAsRead(cd).catch(() => 0);
  await waitFor("dave to get it", () => seenByDave.length === 1);
  const releaseDaveTyping = daveClient.watchTyping(cd);
  await waitFor("dave to see carol typing", () => (daveClient.getSnapshot().typing[cd] ?? []).length === 1);

  // Bob's own listeners saw nothing of it...
  expect(bobClient.storedMessages()).toEqual([]);
  expect(bobClient.getSnapshot().unread).toEqual({});
  expect(bobClient.getSnapshot().typing).toEqual({});
  expect(errors).toEqual([]); // Bob's typing listener on their chat is allowed, and empty
  // ...and listening to Carol's or Dave's documents directly is refused.
  expect(await listenError(bob.firestore, "inbox", dave.uid, cd)).toBe("permission-denied");
  expect(await listenError(bob.firestore, "head", dave.uid, cd)).toBe("permission-denied");
  expect(await listenError(bob.firestore, "receipts", dave.uid, cd)).toBe("permission-denied");
  expect(await listenError(dave.firestore, "head", dave.uid, cd)).toBe("delivered data"); // the same listener as its owner
  releaseTyping();
  releaseDaveTyping();
  for (const c of [bobClient, carolClient, daveClient]) c.dispose();
});
