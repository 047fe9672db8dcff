// Recurring series (issue 31) through the official SDK's callable protocol: scheduled, listed
// with their rule and next occurrences, one occurrence cancelled, then the whole series; a
// hostile rule is invalid-argument. (Their delivery at each occurrence is the processor's,
// tested in Python with its clock moved: tests/service/accepting/test_recurring.py.)
import { afterEach, expect, it } from "vitest";
import { Pack427Error } from "../../src/index.js";
import { closeApps, clientOf, makeChat, makeUser, signUp, unique } from "../support.js";

afterEach(closeApps);

it("schedules a recurring series, lists it, cancels one occurrence and then the series", async () => {
  const alice = await signUp("alice");
  const bob = await signUp("bob");
  await makeUser(alice.uid);
  await makeUser(bob.uid);
  const chatId = unique("ab");
  await makeChat(chatId, [alice.uid, bob.uid]);
  const client = clientOf(alice);
  await client.start();

  const deliverAt = Date.now() + 60 * 60 * 1000;
  const recurrence = { rrule: "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0;COUNT=6", timeZone: "Europe/Berlin" };
  const seriesId = await client.scheduleMessage(chatId, "standup", { deliverAt, recurrence });
  const [listed] = (await client.scheduledMessages()).filter((m) => m.scheduledId === seriesId);
  expect(listed).toMatchObject({ chatId, text: "standup", status: "SCHEDULED", ...recurrence, occurrencesLeft: 6 });
  expect(listed?.upcoming).toHaveLength(6);
  const [first, second] = listed?.upcoming ?? [];
  expect(listed?.nextOccurrenceAt).toBe(first);
  expect(first).toBeGreaterThanOrEqual(deliverAt);
  // Each at 09:00 in Berlin.
  const berlin = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Berlin", hour: "2-digit", minute: "2-digit" });
  expect(new Set(listed?.upcoming.map((at) => berlin.format(at)))).toEqual(new Set(["09:00"]));

  const skipped = await client.cancelScheduledMessage(seriesId, first);
  expect(skipped).toMatchObject({ success: true, status: "CANCELLED", nextOccurrenceAt: second });
  const [after] = (await client.scheduledMessages()).filter((m) => m.scheduledId === seriesId);
  expect(after).toMatchObject({ nextOccurrenceAt: second, occurrencesLeft: 5 });

  expect(await client.cancelScheduledMessage(seriesId)).toMatchObject({ success: true, status: "CANCELLED" });
  expect((await client.scheduledMessages()).filter((m) => m.scheduledId === seriesId)).toEqual([]);

  const refused = await client
    .scheduleMessage(chatId, "spam", { deliverAt, recurrence: { rrule: "FREQ=MINUTELY;COUNT=100", timeZone: "UTC" } })
    .catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(Pack427Error);
  expect((refused as Pack427Error).code).toBe("invalid-argument");
  expect((refused as Pack427Error).message).toContain("more often than once an hour");
});
