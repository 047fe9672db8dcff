// A user past the inbox head's bound (500 chats): the chats parked out of it are in
// users/{uid}/inboxChats, their total on the head as parkedUnread. The client's totalUnread
// adds it, and its unread counts include the parked chats (it listens to them while the head
// has any). The head and the parked chat are written as the engine leaves them (admin).
import { afterEach, expect, it } from "vitest";
import { adminDelete, adminSet, clientOf, closeApps, makeUser, signUp, unique, waitFor } from "../support.js";

afterEach(closeApps);

it("counts the parked chats in totalUnread and shows each parked chat's count", async () => {
  const bob = await signUp("bob");
  await makeUser(bob.uid);
  const held = unique("held");
  const parked = unique("parked");
  await adminSet(`users/${bob.uid}/inboxChats/${parked}`, { chatId: parked, unread: 3, last: "01J" });
  await adminSet(`users/${bob.uid}/inboxHead/current`, {
    seq: 5, chats: { [held]: { unread: 2, last: "01K" } }, parkedUnread: 3, parkedChats: 1,
  });

  const client = clientOf(bob, { deviceId: "phone" });
  await client.start();
  await waitFor("the parked chat's count", () => client.getSnapshot().unread[parked]?.unread === 3);
  expect(client.getSnapshot().totalUnread).toBe(5);
  expect(client.getSnapshot().unread[held]?.unread).toBe(2);

  // The parked chat comes back into the head (a delivery or a read): counted there once, not twice.
  await adminSet(`users/${bob.uid}/inboxHead/current`, {
    seq: 6, chats: { [held]: { unread: 2, last: "01K" }, [parked]: { unread: 4, last: "01M" } }, parkedUnread: 0, parkedChats: 0,
  });
  await adminDelete(`users/${bob.uid}/inboxChats/${parked}`);
  await waitFor("the chat back in the head", () => client.getSnapshot().unread[parked]?.unread === 4);
  expect(client.getSnapshot().totalUnread).toBe(6);
  client.dispose();
});
