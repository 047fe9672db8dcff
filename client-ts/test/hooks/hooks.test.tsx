// The hooks through React (happy-dom), on the official SDK against the emulator suite.
import { act, cleanup, render, renderHook, waitFor as rtlWaitFor } from "@testing-library/react";
import { StrictMode, type ReactNode } from "react";
import { afterEach, expect, it } from "vitest";
import { memoryStorage, type StoredMessage } from "../../src/index.js";
import { Pack427Provider, useOfflineAwareChat, useRealtimeSignals } from "../../src/react/index.js";
import {
  TEST_RETRY,
  closeApps,
  inbox,
  invokerOf,
  makeChat,
  makeUser,
  recording,
  signUp,
  unique,
  waitFor,
  type TestUser,
} from "../support.js";

afterEach(async () => {
  cleanup();
  await closeApps();
});

function wrapper(user: TestUser, extra: { invoker?: ReturnType<typeof recording>["invoker"]; strict?: boolean } = {}) {
  const storage = memoryStorage();
  return function Wrapper({ children }: { children?: ReactNode }) {
    const provider = (
      <Pack427Provider app={user.app} storage={storage} retry={TEST_RETRY} {...(extra.invoker ? { invoker: extra.invoker } : {})}>
        {children}
      </Pack427Provider>
    );
    return extra.strict ? <StrictMode>{provider}</StrictMode> : provider;
  };
}

async function pair() {
  const alice = await signUp("alice");
  const bob = await signUp("bob");
  await makeUser(alice.uid, { displayName: "Alice" });
  await makeUser(bob.uid, { displayName: "Bob" });
  const chatId = unique("ab");
  await makeChat(chatId, [alice.uid, bob.uid]);
  return { alice, bob, chatId };
}

it("sends and receives through useOfflineAwareChat under StrictMode: one listener, one send, each message once", async () => {
  const { alice, bob, chatId } = await pair();
  const bobCalls = recording(invokerOf(bob));
  const received: StoredMessage[] = [];
  let syncs = 0;
  const bobHook = renderHook(
    () => useOfflineAwareChat({ chatId, userId: bob.uid, onMessagesReceived: (m) => received.push(...m), onSyncComplete: () => (syncs += 1) }),
    { wrapper: wrapper(bob, { invoker: bobCalls.invoker, strict: true }) },
  );
  const aliceCalls = recording(invokerOf(alice));
  const aliceHook = renderHook(() => useOfflineAwareChat({ chatId, userId: alice.uid }), {
    wrapper: wrapper(alice, { invoker: aliceCalls.invoker, strict: true }),
  });
  await rtlWaitFor(() => expect(syncs).toBeGreaterThanOrEqual(1), { timeout: 120_000 });

  await act(async () => {
    await aliceHook.result.current.sendMessage("hello");
    await aliceHook.result.current.sendMessage("are you there?");
  });
  await rtlWaitFor(() => expect(aliceHook.result.current.hasPendingMessages).toBe(false), { timeout: 60_000 });
  expect(aliceHook.result.current.messages.map((m) => [m.text, m.state])).toEqual([["hello", "sent"], ["are you there?", "sent"]]);
  await rtlWaitFor(() => expect(bobHook.result.current.messages).toHaveLength(2), { timeout: 60_000 });
  expect(bobHook.result.current.messages.map((m) => [m.text, m.state])).toEqual([["hello", "delivered"], ["are you there?", "delivered"]]);
  expect(received.map((m) => m.text)).toEqual(["hello", "are you there?"]);
  // StrictMode mounted everything twice: still one client each (one registration), one send per message.
  expect(bobCalls.calls.filter((c) => c.name === "pack427_registerDevice")).toHaveLength(1);
  expect(aliceCalls.calls.filter((c) => c.name === "pack427_sendMessage")).toHaveLength(2);
  expect((await inbox(bob.uid)).map((m) => m.text)).toEqual(["hello", "are you there?"]);

  // Bob reads: his messages show read, and Alice sees hers read through the read receipt.
  const signals = renderHook(() => useRealtimeSignals({ chatId, userId: bob.uid }), { wrapper: wrapper(bob, { invoker: bobCalls.invoker }) });
  await rtlWaitFor(() => expect(signals.result.current.getUnreadCount(chatId)).toBe(2), { timeout: 60_000 });
  await act(async () => {
    await signals.result.current.markChatAsRead();
  });
  await rtlWaitFor(() => expect(signals.result.current.totalUnread).toBe(0), { timeout: 60_000 });
  await rtlWaitFor(() => expect(aliceHook.result.current.messages.map((m) => m.state)).toEqual(["read", "read"]), { timeout: 60_000 });

  // Unmounted: no listener is left to call back (a further message changes nothing here).
  bobHook.unmount();
  signals.unmount();
  await act(async () => {
    await aliceHook.result.current.sendMessage("gone?");
  });
  await waitFor("the third to reach bob's inbox", async () => (await inbox(bob.uid)).length === 3);
  await act(async () => {
    await new Promise((resolve) => setTimeout(resolve, 500));
  });
  expect(received).toHaveLength(2);
});

it("counts a blocked send in failedMessagesCount and retryFailedMessages resends it with its clientMessageId", async () => {
  const { alice, bob, chatId } = await pair();
  await makeUser(bob.uid, { displayName: "Bob", blockedUsers: [alice.uid] });
  const calls = recording(invokerOf(alice));
  const hook = renderHook(() => useOfflineAwareChat({ chatId, userId: alice.uid }), { wrapper: wrapper(alice, { invoker: calls.invoker }) });
  let clientMessageId = "";
  await act(async () => {
    clientMessageId = (await hook.result.current.sendMessage("hi")).clientMessageId;
  });
  await rtlWaitFor(() => expect(hook.result.current.failedMessagesCount).toBe(1), { timeout: 120_000 });
  expect(hook.result.current.hasPendingMessages).toBe(false);
  expect(hook.result.current.messages.map((m) => m.state)).toEqual(["failed"]);

  await makeUser(bob.uid, { displayName: "Bob", blockedUsers: [] });
  await act(async () => {
    expect(await hook.result.current.retryFailedMessages()).toBe(1);
  });
  await rtlWaitFor(() => expect(hook.result.current.messages.map((m) => m.state)).toEqual(["sent"]), { timeout: 60_000 });
  expect(hook.result.current.failedMessagesCount).toBe(0);
  const sent = calls.calls.filter((c) => c.name === "pack427_sendMessage").map((c) => (c.data as { clientMessageId: string }).clientMessageId);
  expect(sent).toEqual([clientMessageId, clientMessageId]);
  expect((await inbox(bob.uid)).map((m) => m.text)).toEqual(["hi"]);
});

it("shows typing on the other side, and takes it away 10 s after the last update without a stop", async () => {
  const { alice, bob, chatId } = await pair();
  const bobHook = renderHook(() => useRealtimeSignals({ chatId, userId: bob.uid }), { wrapper: wrapper(bob) });
  // Alice's app types once and never stops (killed): one update, straight through the callable.
  const aliceInvoke = invokerOf(alice);
  await aliceInvoke("pack427_updateTypingState", { chatId, isTyping: true }); // starts her Python worker
  await aliceInvoke("pack427_updateTypingState", { chatId, isTyping: false });
  await aliceInvoke("pack427_updateTypingState", { chatId, isTyping: true });
  const updatedAt = Date.now();
  await rtlWaitFor(() => expect(bobHook.result.current.isAnyoneTyping).toBe(true), { timeout: 30_000 });
  expect(bobHook.result.current.typingUsers.map((u) => u.userId)).toEqual([alice.uid]);
  expect(bobHook.result.current.typingText).toBe(`${alice.uid} is typing`);
  const expiresAt = bobHook.result.current.typingUsers[0]?.expiresAt ?? 0;
  expect(expiresAt - updatedAt).toBeGreaterThan(8_000);
  expect(expiresAt - updatedAt).toBeLessThanOrEqual(10_500);
  // Nothing else happens: no stop, no new snapshot, no re-render asked for. The timer takes it away.
  await rtlWaitFor(() => expect(bobHook.result.current.isAnyoneTyping).toBe(false), { timeout: 15_000, interval: 100 });
  const goneAt = Date.now();
  expect(goneAt).toBeGreaterThanOrEqual(expiresAt);
  expect(goneAt - expiresAt).toBeLessThan(1_500);
  expect(bobHook.result.current.typingText).toBe("");
});

it("sends at most one typing call per 3 s while typing, and stops by itself after 5 s without a keystroke", async () => {
  const { alice, bob, chatId } = await pair();
  const calls = recording(invokerOf(alice));
  const bobHook = renderHook(() => useRealtimeSignals({ chatId, userId: bob.uid }), { wrapper: wrapper(bob) });
  const aliceHook = renderHook(() => useRealtimeSignals({ chatId, userId: alice.uid }), { wrapper: wrapper(alice, { invoker: calls.invoker }) });
  const typingCalls = () => calls.calls.filter((c) => c.name === "pack427_updateTypingState").map((c) => (c.data as { isTyping: boolean }).isTyping);
  const start = Date.now();
  while (Date.now() - start < 3_500) {
    act(() => aliceHook.result.current.startTyping());
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(typingCalls()).toEqual([true, true]); // at 0 s and after 3 s, not one per keystroke
  await rtlWaitFor(() => expect(bobHook.result.current.typingText).toBe(`${alice.uid} is typing`), { timeout: 30_000 });
  const lastKeystroke = Date.now();
  await rtlWaitFor(() => expect(typingCalls()).toEqual([true, true, false]), { timeout: 10_000 });
  expect(Date.now() - lastKeystroke).toBeGreaterThanOrEqual(4_500);
  await rtlWaitFor(() => expect(bobHook.result.current.isAnyoneTyping).toBe(false), { timeout: 30_000 });
});

it("renders a component with both hooks and leaves nothing running after unmount", async () => {
  const { alice, chatId } = await pair();
  function Chat() {
    const chat = useOfflineAwareChat({ chatId, userId: alice.uid });
    const signals = useRealtimeSignals({ chatId, userId: alice.uid });
    return <p>{`${chat.isOnline ? "online" : "offline"} ${chat.messages.length} messages, ${signals.totalUnread} unread`}</p>;
  }
  const Wrapper = wrapper(alice, { strict: true });
  const view = render(<Wrapper><Chat /></Wrapper>);
  await rtlWaitFor(() => expect(view.container.textContent).toBe("online 0 messages, 0 unread"), { timeout: 30_000 });
  view.unmount();
  expect(view.container.textContent).toBe("");
});
