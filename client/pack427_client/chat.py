"""Offline-aware chat: the Python port of the seed's `useOfflineAwareChat` hook.

    chat = OfflineAwareChat(client, LocalStore("chat.db"), user_id=uid, device_id="laptop")
    chat.send_message("c1", "hello")      # stored, then sent if online
    chat.sync_messages()                  # everything missed, in order, once

Sending: send_message gives the message its clientMessageId (a ULID, the
engine's idempotency key) and stores it in the outbox before anything goes
on the network, so a message written offline, or just before the app died,
is sent when the app is next online. flush() sends the outbox oldest first,
one at a time, so the engine accepts them in the order written; a send that
gets no answer, or a retryable error, is repeated with the same
clientMessageId after a back-off (the engine answers a repeat with the
first result, `duplicate: true`), and a message the engine refuses for good
(not in the chat, blocked, invalid) is marked failed and the next goes on.

Receiving: sync_messages pages the device's inbox from the stored cursor
until `hasMore` is false; each page's messages and the cursor after them
are stored in one SQLite transaction, and only then acknowledged. Messages
are de-duplicated by id, so a page fetched twice (reply lost, app killed)
delivers nothing twice to the callbacks. A stored cursor the engine refuses
as invalid-argument (signed with a key it no longer accepts, after a key
rotation outlasted by the device; or damaged) is forgotten and the sync
starts again without one, from the position the engine recorded for the
device (or the start of the inbox): repeats, dropped by id, and no stop.

Online state: an app that knows its connectivity calls set_online (offline:
nothing goes on the network; back online: the outbox is flushed and the
device syncs, as the hook does on reconnect). Without that, a call that gets
no answer makes `is_online` false and the next answer makes it true again;
each send_message still tries the network.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ulid import ULID

from .callable import CallableClient
from .errors import CallableError, ClientError, InvalidArgument, ResourceExhausted, TransportError
from .store import LocalStore, OutboxStatus, OutgoingMessage, ReceivedMessage

ACK_BATCH = 500
"""Message ids per ackMessages call (the engine's MAX_ACK_IDS)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a send or sync call is tried.

    Attributes:
        max_attempts: tries per message before it is marked failed (default 10).
        base_delay_s: the first back-off (default 0.2 s), doubled after each failure...
        max_delay_s: ...up to this (default 10 s).
        max_rate_limit_wait_s: longest wait honoured for a rate-limited send
            (RESOURCE_EXHAUSTED, which does not count as an attempt; default 65 s).
    """

    max_attempts: int = 10
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0
    max_rate_limit_wait_s: float = 65.0

    def delay(self, failures: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** max(0, failures - 1))


class OfflineAwareChat:
    """One user's chat on one device, surviving bad networks and restarts.

    Args:
        client: the signed-in user's CallableClient.
        store: where the outbox, received messages and cursor live.
        user_id: the signed-in user's uid.
        device_id: this installation's id (stable across restarts).
        platform, app_version: sent with registerDevice (default "web", "1").
        on_messages_received: called with each batch of new messages (stored first).
        on_sync_complete: called after a sync reached the end of the inbox.
        retry: back-off and attempt limits (default RetryPolicy()).
        sleep: how to wait between attempts (default time.sleep; tests may pass their own).
    """

    def __init__(
        self,
        client: CallableClient,
        store: LocalStore,
        *,
        user_id: str,
        device_id: str,
        platform: str = "web",
        app_version: str = "1",
        on_messages_received: Callable[[list[ReceivedMessage]], None] | None = None,
        on_sync_complete: Callable[[], None] | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.store = store
        self.user_id = user_id
        self.device_id = device_id
        self.platform = platform
        self.app_version = app_version
        self.on_messages_received = on_messages_received
        self.on_sync_complete = on_sync_complete
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._offline_declared = False
        self._reachable = True
        self._syncing = False
        self._registered = False
        self._send_lock = threading.Lock()
        self._sync_lock = threading.Lock()

    # ------------------------------------------------------------ state

    @property
    def is_online(self) -> bool:
        """Not declared offline, and the last call got an answer."""
        return not self._offline_declared and self._reachable

    @property
    def is_syncing(self) -> bool:
        return self._syncing

    @property
    def queued_messages(self) -> list[OutgoingMessage]:
        """Messages written and not accepted yet (failed ones excluded), oldest first."""
        return self.store.outbox(self.user_id, OutboxStatus.QUEUED)

    @property
    def has_pending_messages(self) -> bool:
        return bool(self.queued_messages)

    @property
    def failed_messages_count(self) -> int:
        return len(self.store.outbox(self.user_id, OutboxStatus.FAILED))

    def messages(self, chat_id: str | None = None) -> list[ReceivedMessage]:
        """Received (and resynced) messages stored on this device, oldest first."""
        return self.store.messages(self.user_id, chat_id)

    def set_online(self, online: bool) -> None:
        """Tell the chat about connectivity; coming online flushes the outbox and syncs."""
        was_declared_offline, self._offline_declared = self._offline_declared, not online
        if online and was_declared_offline:
            self.flush()
            self.sync_messages()

    # ------------------------------------------------------------ sending

    def send_message(self, chat_id: str, text: str | None = None, *, content_ref: str | None = None) -> OutgoingMessage:
        """Write a message: stored in the outbox at once, sent now if online.

        Returns the message as it stands after this call (status sent, or
        queued when offline or the network failed, or failed when refused).
        """
        message = self.store.enqueue(self.user_id, str(ULID()), chat_id, text, content_ref)
        if not self._offline_declared:
            self.flush()
        return self.store.outgoing(message.client_message_id)

    def retry_failed_messages(self) -> int:
        """Queue the failed messages again (attempts reset) and flush; how many were queued."""
        count = self.store.requeue_failed(self.user_id)
        if count and not self._offline_declared:
            self.flush()
        return count

    def flush(self) -> int:
        """Send queued messages oldest first until the outbox is empty or the network is gone.

        Returns how many were accepted. A message refused for good, or
        failing on the server RetryPolicy.max_attempts times, is marked
        failed and the next one goes. A message that got no answer
        max_attempts times in a row stays queued, and so do the ones after it
        (the network is gone: the next flush, or set_online(True), goes on).
        """
        accepted = 0
        if self._offline_declared:
            return accepted
        with self._send_lock:
            for message in self.queued_messages:
                outcome = self._send(message)
                if outcome is OutboxStatus.SENT:
                    accepted += 1
                elif outcome is OutboxStatus.QUEUED:
                    break  # offline: keep the order, try again on the next flush
        return accepted

    def _send(self, message: OutgoingMessage) -> OutboxStatus:
        """Send one message until accepted, refused for good, or the network is gone."""
        data = {"chatId": message.chat_id, "clientMessageId": message.client_message_id}
        data |= {"text": message.text} if message.text is not None else {}
        data |= {"contentRef": message.content_ref} if message.content_ref is not None else {}
        server_failures = no_answers = 0
        while True:
            try:
                result = self._call("pack427_sendMessage", data)
            except ResourceExhausted as err:
                wait = err.retry_after_s or self.retry.max_delay_s
                if wait > self.retry.max_rate_limit_wait_s:
                    self.store.record_attempt(message.client_message_id, error=str(err), status=OutboxStatus.FAILED)
                    return OutboxStatus.FAILED
                self._sleep(wait)  # not an attempt: the engine asked us to wait
                continue
            except TransportError as err:
                # No answer: the message may or may not be accepted; the same
                # clientMessageId makes the repeat safe. Never fails the message.
                no_answers += 1
                self.store.record_attempt(message.client_message_id, error=str(err))
                if no_answers >= self.retry.max_attempts:
                    return OutboxStatus.QUEUED  # the network is gone: the next flush goes on
                self._sleep(self.retry.delay(no_answers))
                continue
            except CallableError as err:
                server_failures += 1
                give_up = not err.retryable or server_failures >= self.retry.max_attempts
                status = OutboxStatus.FAILED if give_up else OutboxStatus.QUEUED
                self.store.record_attempt(message.client_message_id, error=str(err), status=status)
                if give_up:
                    return status
                self._sleep(self.retry.delay(server_failures))
                continue
            self.store.record_attempt(message.client_message_id, status=OutboxStatus.SENT,
                                      message_id=result["messageId"])
            return OutboxStatus.SENT

    # ------------------------------------------------------------ receiving

    def register(self) -> dict:
        """registerDevice (idempotent); sync_messages does it once per instance."""
        result = self._with_retries("pack427_registerDevice", {
            "deviceId": self.device_id, "platform": self.platform, "appVersion": self.app_version})
        self._registered = True
        return result

    def sync_messages(self) -> list[ReceivedMessage]:
        """Fetch everything delivered since this device's stored cursor; returns the new messages.

        Pages until the engine says there is no more; stores each page with
        the cursor after it, then acknowledges it; calls on_messages_received
        per page with the new messages and on_sync_complete at the end.
        A stored cursor refused as invalid-argument is forgotten and the sync
        starts again without it (once per call). Raises ClientError if the
        network fails for RetryPolicy.max_attempts tries in a row (what was
        stored stays stored).
        """
        new: list[ReceivedMessage] = []
        with self._sync_lock:
            self._syncing = True
            try:
                if not self._registered:
                    self.register()
                restarted = False
                while True:
                    cursor = self.store.cursor(self.user_id, self.device_id)
                    # Without a cursor, a syncId: its retries are served from where it started.
                    data = {"deviceId": self.device_id} | ({"cursor": cursor} if cursor else {"syncId": str(ULID())})
                    try:
                        page = self._with_retries("pack427_syncMessages", data)
                    except InvalidArgument:
                        if not cursor or restarted:
                            raise
                        # The engine no longer accepts the stored cursor (its key was rotated past the
                        # period, or the store is damaged): start again from the position the engine
                        # recorded for this device, the start of the inbox if that is refused too.
                        # Messages already stored are dropped by id, so nothing arrives twice.
                        self.store.forget_cursor(self.user_id, self.device_id)
                        restarted = True
                        continue
                    received = [ReceivedMessage.from_wire(m) for m in page["messages"]]
                    fresh = self.store.store_page(self.user_id, received, device_id=self.device_id,
                                                  cursor=page["cursor"])
                    self._ack_stored()
                    if fresh:
                        new += fresh
                        if self.on_messages_received:
                            self.on_messages_received(fresh)
                    if not page["hasMore"]:
                        break
            finally:
                self._syncing = False
        if self.on_sync_complete:
            self.on_sync_complete()
        return new

    def refresh_chat(self, chat_id: str) -> list[ReceivedMessage]:
        """The seed's forced resync: the chat's whole message record (own messages
        included), stored; returns the messages this device did not have."""
        new: list[ReceivedMessage] = []
        cursor = None
        while True:
            data = {"chatId": chat_id} | ({"cursor": cursor} if cursor else {})
            page = self._with_retries("pack427_resyncChat", data)
            fresh = self.store.store_page(self.user_id, [ReceivedMessage.from_wire(m) for m in page["messages"]])
            new += fresh
            if fresh and self.on_messages_received:
                self.on_messages_received(fresh)
            cursor = page.get("cursor")
            if not page["hasMore"] or not cursor:
                return new

    # ------------------------------------------------------------ scheduled messages

    def schedule_message(
        self,
        chat_id: str,
        text: str | None = None,
        *,
        deliver_at: datetime,
        content_ref: str | None = None,
        client_message_id: str | None = None,
        rrule: str | None = None,
        time_zone: str | None = None,
    ) -> str:
        """Schedule a message for `deliver_at` (at most 30 days ahead): the engine accepts it now
        and delivers it then. It needs the network (it is not kept in the outbox); a call without
        an answer is repeated with the same clientMessageId, so it is scheduled once.

        Args:
            chat_id: the chat (the user must be a participant).
            text: the message's text (default: none; then content_ref).
            deliver_at: when (timezone-aware); of a series, its start: the first occurrence is the
                rule's first instance at or after it.
            content_ref: content stored elsewhere (default: none).
            client_message_id: the idempotency key (default: a new ULID).
            rrule: an RFC 5545 RRULE of the engine's subset (README, "Recurring messages"), e.g.
                "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;COUNT=10": the message recurs
                (default: once). Requires time_zone.
            time_zone: the IANA zone of the rule's wall times, e.g. "Europe/Berlin" (default: none).

        Returns:
            Its scheduled id, for cancel_scheduled_message.

        Raises:
            CallableError: refused (a bad time or rule is InvalidArgument, as any refused send).
        """
        data: dict = {"chatId": chat_id, "clientMessageId": client_message_id or str(ULID()),
                      "deliverAt": round(deliver_at.timestamp() * 1000)}
        data |= ({"text": text} if text is not None else {}) | ({"contentRef": content_ref} if content_ref else {})
        if rrule is not None or time_zone is not None:
            data["recurrence"] = {"rrule": rrule, "timeZone": time_zone}
        return self._with_retries("pack427_sendMessage", data)["messageId"]

    def schedule_recurring_message(self, chat_id: str, text: str, *, rrule: str, time_zone: str,
                                   starting: datetime, client_message_id: str | None = None) -> str:
        """A recurring series (schedule_message with a rule): `text` at each occurrence of `rrule` in
        `time_zone`, from `starting` (its first occurrence is the rule's first instance at or after it).

        Args:
            chat_id: the chat.
            text: the message of every occurrence.
            rrule: the RFC 5545 RRULE (the engine's subset: README, "Recurring messages").
            time_zone: the IANA zone of its wall times.
            starting: the series' start (deliverAt; at most 30 days ahead).
            client_message_id: the idempotency key (default: a new ULID).

        Returns:
            The series' scheduled id, for cancel_scheduled_message.
        """
        return self.schedule_message(chat_id, text, deliver_at=starting, client_message_id=client_message_id,
                                     rrule=rrule, time_zone=time_zone)

    def cancel_scheduled_message(self, scheduled_id: str, occurrence_at: datetime | None = None) -> dict:
        """Cancel one of the user's scheduled messages or recurring series (again: nothing changes);
        FailedPrecondition once it was delivered.

        Args:
            scheduled_id: as schedule_message returned it.
            occurrence_at: one occurrence of a series (as listed: `nextOccurrenceAt` or one of
                `upcoming`, Unix ms, here as a datetime): only that one is cancelled, the series goes on
                (default: the whole series, or the message).

        Returns:
            The engine's answer: status CANCELLED, and after an occurrence the series' nextOccurrenceAt.
        """
        data: dict = {"scheduledId": scheduled_id}
        if occurrence_at is not None:
            data["occurrenceAt"] = round(occurrence_at.timestamp() * 1000)
        return self._with_retries("pack427_cancelScheduledMessage", data)

    def scheduled_messages(self) -> list[dict]:
        """The user's messages and series still scheduled, and series stopped (status STOPPED, reason),
        soonest first (scheduledId, chatId, text, deliverAt...; of a series rrule, timeZone,
        nextOccurrenceAt, upcoming, occurrencesLeft, occurrencesDelivered)."""
        return self._with_retries("pack427_listScheduledMessages", {})["messages"]

    def _ack_stored(self) -> None:
        while ids := self.store.unacked(self.user_id, ACK_BATCH):
            self._with_retries("pack427_ackMessages", {"messageIds": ids, "deviceId": self.device_id})
            self.store.mark_acked(self.user_id, ids)

    # ------------------------------------------------------------ calls

    def _call(self, name: str, data: dict) -> dict:
        try:
            result = self.client.call(name, data)
        except TransportError:
            self._reachable = False
            raise
        except CallableError:
            self._reachable = True
            raise
        self._reachable = True
        return result

    def _with_retries(self, name: str, data: dict) -> dict:
        """An idempotent call, repeated after back-off while it fails retryably."""
        failures = 0
        while True:
            try:
                return self._call(name, data)
            except ResourceExhausted as err:
                self._sleep(min(err.retry_after_s or self.retry.max_delay_s, self.retry.max_rate_limit_wait_s))
            except ClientError as err:
                failures += 1
                if not err.retryable or failures >= self.retry.max_attempts:
                    raise
                self._sleep(self.retry.delay(failures))
