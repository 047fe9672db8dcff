"""Push outcomes: which FCM answers fail the attempt and which do not.

FCM itself is replaced (no network here); the classification is ours.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from firebase_admin import exceptions, messaging

from pack427.delivering.notifier import EmulatorNotifier, FcmNotifier, PushError
from pack427.models import QueuedMessage, Region, TransportMetadata

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def entry(tokens: list[str], attempts: int = 0) -> QueuedMessage:
    return QueuedMessage(
        id="m_bob", message_id="m", chat_id="c", sender_id="alice", recipient_id="bob", region=Region.EU,
        target_region=Region.EU, content_ref="chats/c/messages/m", attempts=attempts, next_attempt_at=NOW,
        transport_metadata=TransportMetadata(push_tokens=tokens, sender_name="Alice"), created_at=NOW, updated_at=NOW,
    )


@pytest.fixture
def fcm(monkeypatch):
    """Answers FCM would give, one per token, in order; records what was sent."""
    sent = []

    def answer_with(*outcomes):
        def send_each_for_multicast(message):
            sent.append(message)
            return messaging.BatchResponse(
                [messaging.SendResponse(None, o) if isinstance(o, Exception) else messaging.SendResponse({"name": o}, None)
                 for o in outcomes]
            )
        monkeypatch.setattr(messaging, "send_each_for_multicast", send_each_for_multicast)
        return sent

    return answer_with


def test_push_names_the_sender_and_carries_no_message_text(fcm):
    sent = fcm("projects/p/messages/1")
    FcmNotifier().notify(entry(["t1"]))
    [message] = sent
    assert message.tokens == ["t1"] and message.notification.title == "Alice"
    assert message.data == {"chatId": "c", "messageId": "m"}


def test_one_device_accepting_is_enough(fcm):
    sent = fcm(exceptions.UnavailableError("down"), "projects/p/messages/1")
    FcmNotifier().notify(entry(["t1", "t2"]))  # no PushError: the attempt succeeded
    assert [m.tokens for m in sent] == [["t1", "t2"]]  # one multicast to both devices

    fcm(exceptions.UnavailableError("down"), exceptions.UnavailableError("down too"))
    with pytest.raises(PushError):  # the same push with no device accepting fails the attempt
        FcmNotifier().notify(entry(["t1", "t2"]))


def test_only_stale_tokens_is_not_a_failure_and_is_logged(fcm, capfd):
    sent = fcm(messaging.UnregisteredError("gone"), exceptions.InvalidArgumentError("bad token"))
    FcmNotifier().notify(entry(["t1", "t2"]))  # no PushError: retrying cannot help, sync has the message
    assert len(sent) == 1
    logged = capfd.readouterr()
    assert "no valid push token for bob" in logged.out + logged.err


def test_a_transient_error_fails_the_attempt(fcm):
    fcm(messaging.UnregisteredError("gone"), exceptions.UnavailableError("FCM down"))
    with pytest.raises(PushError, match="FCM down"):
        FcmNotifier().notify(entry(["t1", "t2"]))


def test_emulator_notifier_fails_on_request():
    EmulatorNotifier().notify(entry(["ok"]))
    with pytest.raises(PushError):
        EmulatorNotifier().notify(entry(["fail-always"], attempts=7))
    with pytest.raises(PushError):
        EmulatorNotifier().notify(entry(["fail-first-2"], attempts=1))
    EmulatorNotifier().notify(entry(["fail-first-2"], attempts=2))
