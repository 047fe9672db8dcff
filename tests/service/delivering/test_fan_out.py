"""Groups beyond the inline limit: the send commits the message with a fan-out job,
and the fan-out places it in every member's inbox, chunk by chunk, exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from support.chatcore import all_documents, head, inbox, make_chat, make_user, queue_entries
from ulid import ULID

from pack427 import audit, clock, constants
from pack427.accepting import sending
from pack427.delivering import fan_out
from pack427.delivering.notifier import EmulatorNotifier
from pack427.errors import FailedPrecondition
from pack427.models import Region, SendMessageRequest
from pack427.workers import processor


@pytest.fixture(autouse=True)
def small_limits(monkeypatch):
    """Chunks of 3 and an inline limit of 2: a group of a dozen crosses every boundary."""
    monkeypatch.setattr(constants, "FAN_OUT_CHUNK", 3)
    monkeypatch.setattr(constants, "INLINE_MAX_RECIPIENTS", 2)


def group(db, size: int, chat_id: str = "big") -> list[str]:
    members = [f"m{n:02d}" for n in range(size)]
    for uid in members:
        make_user(db, uid)
    make_chat(db, chat_id, members)
    return members


def send(db, sender: str, text: str = "hello", chat_id: str = "big"):
    return sending.send_message(db, sender, SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()), text=text))


def jobs(db, chat_id: str = "big") -> list[dict]:
    return [s.to_dict() for s in db.collection(f"chats/{chat_id}/fanOuts").stream()]


def message_ids(db, uid: str) -> list[str]:
    return [e["messageId"] for e in inbox(db, uid)]


def killed_on_the_third_chunk(db, monkeypatch) -> None:
    """Work the chat's fan-out until its worker dies before committing the third chunk."""
    commit_chunk = fan_out._commit_chunk
    commits = []

    def crash_on_the_third(*args, **kwargs):
        if len(commits) == 2:
            raise RuntimeError("the instance died")
        commits.append(commit_chunk(*args, **kwargs))
        return commits[-1]

    monkeypatch.setattr(fan_out, "_commit_chunk", crash_on_the_third)
    with pytest.raises(RuntimeError):
        fan_out.run_chat(db, "big")
    monkeypatch.setattr(fan_out, "_commit_chunk", commit_chunk)


def test_a_large_group_send_commits_the_message_with_its_job_and_the_fan_out_reaches_every_member(db):
    members = group(db, 11)
    make_user(db, "m03", online=False, tokens=["phone-of-m03"])
    make_user(db, "m07", blocked=["m00"])  # m07 blocked the sender: gets nothing

    result = send(db, "m00")

    [job] = jobs(db)
    assert (job["message"]["id"], job["recipients"], job["next"]) == (result.messageId, members[1:], 0)
    chat = db.document("chats/big").get().to_dict()
    assert (chat["fanOutPending"], chat["deliveryQueued"], chat["lastMessage"]["messageId"]) == (
        True, True, result.messageId)
    assert all(inbox(db, uid) == [] for uid in members) and queue_entries(db) == []

    assert fan_out.run_chat(db, "big") == 10
    for uid in members[1:]:
        expected = [] if uid == "m07" else [result.messageId]
        assert message_ids(db, uid) == expected, uid
    entry = inbox(db, "m01")[0]
    assert (entry["seq"], entry["via"], entry["text"], entry["senderName"]) == (1, "fanOut", "hello", "m00")
    assert head(db, "m01")["chats"]["big"]["unread"] == 1
    assert "big" not in head(db, "m07").get("chats", {})
    [push] = queue_entries(db)  # only the offline member's push, the message already in their inbox
    assert (push["recipientId"], push["awaitingInbox"], push["inboxSeq"]) == ("m03", False, 1)
    assert jobs(db) == [] and db.document("chats/big").get().get("fanOutPending") is False
    trail = {(e.entry_id, e.actor, e.action) for e in audit.history(db, "big", result.messageId)}
    placed = {(f"{result.messageId}_{uid}", "fanOut", "DELIVERED") for uid in members[1:] if uid != "m07"}
    assert trail == placed | {(f"{result.messageId}_m03", "fanOut", "ENQUEUED")}  # and the push entry, not yet sent


def test_a_fan_out_killed_half_way_and_resumed_delivers_every_member_exactly_once(db, monkeypatch):
    members = group(db, 12)
    result = send(db, "m00")
    killed_on_the_third_chunk(db, monkeypatch)
    reached = [uid for uid in members[1:] if message_ids(db, uid)]
    assert reached == members[1:7] and jobs(db)[0]["next"] == 6  # two chunks of three, and the cursor

    # The processor finds the job nobody moved for a while and resumes it where it stopped.
    assert fan_out.resume_stalled(db, now=clock.now()) == 0  # not stalled yet
    later = clock.now() + timedelta(seconds=constants.FAN_OUT_STALLED_SECONDS + 1)
    assert fan_out.resume_stalled(db, now=later) == 5
    assert all(message_ids(db, uid) == [result.messageId] for uid in members[1:])
    assert all(head(db, uid)["seq"] == 1 and head(db, uid)["chats"]["big"]["unread"] == 1 for uid in members[1:])
    assert jobs(db) == []


def test_racing_workers_and_replayed_events_fan_out_each_member_once(db):
    members = group(db, 40)
    result = send(db, "m00")
    job = db.document(f"chats/big/fanOuts/{result.messageId}").get()
    barrier = threading.Barrier(4)
    errors = []

    def worker():
        barrier.wait()
        try:
            fan_out.on_created(db, job)  # the same event, four times at once
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(message_ids(db, uid) == [result.messageId] for uid in members[1:])
    assert all(head(db, uid)["seq"] == 1 for uid in members[1:])
    before = all_documents(db)
    fan_out.on_created(db, job)  # replayed once more, after the job is done: nothing changes
    assert all_documents(db) == before


def test_a_large_group_keeps_its_order_with_queued_and_small_sends_around_its_fan_outs(db, monkeypatch):
    members = group(db, 7)
    with monkeypatch.context() as queued:  # first a message that waits in the queue (a send that lost its races)
        queued.setattr(constants, "INLINE_MAX_RECIPIENTS", 10)
        queued.setattr(constants, "INLINE_ATTEMPTS", 0)
        first = send(db, "m01", "one")
    second = send(db, "m00", "two")  # fan-out, behind the queued one
    third = send(db, "m02", "three")  # fan-out too; its job waits behind the second's
    assert [j["message"]["id"] for j in jobs(db)] == [second.messageId, third.messageId]

    fan_out.run_chat(db, "big")
    # Members the first message still waits for got the others through the queue, behind it.
    waiting = [e for e in queue_entries(db) if e["awaitingInbox"]]
    assert {e["messageId"] for e in waiting} == {first.messageId, second.messageId, third.messageId}
    processor.drain(db, EmulatorNotifier(), time_budget_s=30)
    with monkeypatch.context() as small:  # the chat is small again: a send asks the queue and places itself
        small.setattr(constants, "INLINE_MAX_RECIPIENTS", 10)
        fourth = send(db, "m03", "four")
    order = [first.messageId, second.messageId, third.messageId, fourth.messageId]
    for uid in members:
        own = {first.messageId: "m01", second.messageId: "m00", third.messageId: "m02", fourth.messageId: "m03"}
        expected = [m for m in order if own[m] != uid]
        assert message_ids(db, uid) == expected, uid
        assert [e["seq"] for e in inbox(db, uid)] == list(range(1, len(expected) + 1))
        assert head(db, uid)["chats"]["big"]["unread"] == len(expected)
    assert inbox(db, "m04")[-1]["via"] == "send"


def test_a_send_to_a_chat_with_a_fan_out_pending_fans_out_too(db, monkeypatch):
    group(db, 5)
    big = send(db, "m00")
    with monkeypatch.context() as small:  # members left: two recipients, under the limit
        small.setattr(constants, "INLINE_MAX_RECIPIENTS", 10)
        after = send(db, "m01")
    assert [j["message"]["id"] for j in jobs(db)] == [big.messageId, after.messageId]
    assert inbox(db, "m02") == []  # not placed ahead of the fan-out
    fan_out.run_chat(db, "big")
    assert message_ids(db, "m02") == [big.messageId, after.messageId]


def test_groups_up_to_max_recipients_are_accepted_and_larger_ones_refused_writing_nothing(db):
    make_user(db, "m00000")
    members = [f"m{n:05d}" for n in range(constants.MAX_RECIPIENTS + 1)]
    make_chat(db, "big", members)
    assert send(db, "m00000").messageId  # 10,000 recipients: accepted, their profiles read by the fan-out
    assert len(jobs(db)[0]["recipients"]) == constants.MAX_RECIPIENTS

    make_chat(db, "huge", [*members, "one-too-many"])
    before = all_documents(db)
    with pytest.raises(FailedPrecondition, match="more than 10000 recipients"):
        send(db, "m00000", chat_id="huge")
    assert all_documents(db) == before


def test_a_fan_out_places_a_member_whose_home_is_another_region_in_that_region(db):
    group(db, 4)
    make_user(db, "m02", region="APAC")
    send(db, "m00")
    fan_out.run_chat(db, "big")
    assert inbox(db, "m02")[0]["region"] == Region.APAC.value


def test_a_participant_id_that_cannot_key_a_document_does_not_hold_the_group_back(db):
    members = group(db, 5)
    make_chat(db, "big", [*members, "a/b"])  # the chat core's data: not a usable uid
    result = send(db, "m00")
    assert jobs(db)[0]["recipients"] == members[1:]
    fan_out.run_chat(db, "big")
    assert all(message_ids(db, uid) == [result.messageId] for uid in members[1:])
    assert jobs(db) == []


def test_resuming_stalled_fan_outs_starts_no_chat_after_its_budget(db):
    for chat_id in ("s1", "s2"):
        group(db, 4, chat_id=chat_id)
    for chat_id in ("s1", "s2"):
        sending.send_message(db, "m00", SendMessageRequest(chatId=chat_id, clientMessageId=str(ULID()), text="x"),
                             now=clock.now() - timedelta(minutes=5))
    assert fan_out.resume_stalled(db, budget_s=0) == 3  # the first chat, then the budget is spent
    assert len(jobs(db, "s1")) + len(jobs(db, "s2")) == 1
    assert fan_out.resume_stalled(db) == 3


# ------------------------------------------------------------ the job's size (issue 27)


def parts(db, message_id: str, chat_id: str = "big") -> list[list[str]]:
    found = db.collection(f"chats/{chat_id}/fanOuts/{message_id}/parts").stream()
    return [s.get("recipients") for s in sorted(found, key=lambda s: int(s.id))]


@pytest.fixture
def tiny_jobs(monkeypatch):
    """A job holds 2 ids of 3 characters (4 bytes each), a part 3: 11 recipients take the job and 3 parts."""
    monkeypatch.setattr(constants, "FAN_OUT_INLINE_BYTES", 8)
    monkeypatch.setattr(constants, "FAN_OUT_PART_BYTES", 12)


def test_recipients_past_the_job_s_bytes_go_in_parts_and_every_member_gets_the_message_once(db, tiny_jobs):
    members = group(db, 12)
    result = send(db, "m00")

    [job] = jobs(db)
    assert (job["recipients"], job["parts"]) == (members[1:3], 3)
    assert parts(db, result.messageId) == [members[3:6], members[6:9], members[9:12]]
    assert fan_out.run_chat(db, "big") == 11
    assert all(message_ids(db, uid) == [result.messageId] for uid in members[1:])
    assert jobs(db) == [] and parts(db, result.messageId) == []  # the last chunk deleted the job and its parts


def test_a_job_at_its_bytes_has_no_part(db, monkeypatch):
    monkeypatch.setattr(constants, "FAN_OUT_INLINE_BYTES", 4 * 11)  # exactly the 11 recipients' ids
    members = group(db, 12)
    result = send(db, "m00")
    assert (jobs(db)[0]["recipients"], jobs(db)[0]["parts"]) == (members[1:], 0)
    assert parts(db, result.messageId) == []
    fan_out.run_chat(db, "big")
    assert all(message_ids(db, uid) == [result.messageId] for uid in members[1:])


def test_a_job_with_parts_killed_half_way_resumes_from_its_cursor_and_races_place_nobody_twice(
        db, tiny_jobs, monkeypatch):
    members = group(db, 12)
    result = send(db, "m00")
    killed_on_the_third_chunk(db, monkeypatch)
    assert [uid for uid in members[1:] if message_ids(db, uid)] == members[1:7] and jobs(db)[0]["next"] == 6

    # Three workers resume it at once (the processor, a replayed event, another), reading the parts again.
    barrier = threading.Barrier(3)

    def worker():
        barrier.wait()
        fan_out.run_chat(db, "big")

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(message_ids(db, uid) == [result.messageId] for uid in members[1:])
    assert all(head(db, uid)["seq"] == 1 for uid in members[1:])
    assert jobs(db) == [] and parts(db, result.messageId) == []


def test_a_job_whose_part_is_missing_is_set_aside_and_released_once_repaired(db, tiny_jobs):
    members = group(db, 12)
    first = send(db, "m00", "one").messageId
    part = db.document(f"chats/big/fanOuts/{first}/parts/2")
    kept = part.get().to_dict()
    part.delete()  # a hand edit
    second = send(db, "m00", "two").messageId

    fan_out.run_chat(db, "big")
    assert all(message_ids(db, uid) == [second] for uid in members[1:])  # the chat's next message went on
    assert db.document(f"chats/big/quarantinedFanOuts/{first}").get().get("quarantine")["problem"] == (
        "part 2 of 3 is missing")
    assert fan_out.release(db, "big", first) == "still unusable: part 2 of 3 is missing"

    part.set(kept)
    assert fan_out.release(db, "big", first) is None
    fan_out.run_chat(db, "big")  # its trigger
    assert all(sorted(message_ids(db, uid)) == sorted([first, second]) for uid in members[1:])
    assert jobs(db) == [] and parts(db, first) == []


def test_a_group_as_large_as_a_chat_document_holds_with_the_longest_ids_fans_out(db, monkeypatch):
    # The emulator refuses a document over 1 MiB, as Firestore does. A chat of 8,100 ids of 128
    # characters is 1.04 MB: a job listing them all, beside a 4,000-character text, would not fit.
    monkeypatch.setattr(constants, "FAN_OUT_CHUNK", 150)
    members = [f"{n:05d}" + "u" * (constants.MAX_ID_LENGTH - 5) for n in range(8_100)]
    make_user(db, members[0])
    make_chat(db, "huge", members)
    result = sending.send_message(db, members[0], SendMessageRequest(
        chatId="huge", clientMessageId=str(ULID()), text="x" * constants.MAX_TEXT_LENGTH))

    [job] = jobs(db, "huge")
    assert job["parts"] == 2 and len(job["recipients"]) + sum(map(len, parts(db, result.messageId, "huge"))) == 8_099
    assert fan_out.run_chat(db, "huge") == 8_099
    delivered = db.collection_group("inbox").where(filter=FieldFilter("messageId", "==", result.messageId)).count().get()[0][0].value
    assert delivered == 8_099
    assert jobs(db, "huge") == [] and parts(db, result.messageId, "huge") == []
