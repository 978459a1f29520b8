"""The email backend, through Django's SMTP backend, against a real SMTP server (aiosmtpd)
on the loopback interface."""

import email
import email.policy
import os
import socket

import pytest
from aiosmtpd.controller import Controller

from campaigns.backends.base import (
    DeliveryResult,
    OutcomeUnknownError,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from campaigns.backends.email import EmailBackend

SENDER = "Omni Shop <news@shop.example.com>"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RecordingHandler:
    """Accepts mail like a real server, except for a few scripted addresses:
    ``refused@`` gets 550, ``busy@`` gets 450 and ``hangup@`` has its connection dropped."""

    def __init__(self):
        self.received = []  # (peer, mail from, recipients, raw bytes)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refused@"):
            return "550 5.1.1 <refused@example.com>: Recipient address rejected"
        if address.startswith("busy@"):
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos == ["hangup@example.com"]:
            server.transport.close()
            return "250 OK"
        self.received.append(
            (session.peer, envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on 127.0.0.1, with Django's SMTP backend pointed at it."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = SENDER
    settings.OMNI_SITE_URL = "https://omni.example.com"
    yield handler
    controller.stop()


def reminder(message_id=42, **fields):
    values = {
        "message_id": message_id,
        "channel_code": "email",
        "channel_kind": "email",
        "to": "lea@example.com",
        "subject": "Léa, votre panier vous attend",
        "text": "Bonjour Léa,\nVotre panier vous attend.\n",
        "html": "<p>Bonjour L&eacute;a,</p><p>Votre panier vous attend.</p>",
        "unsubscribe_url": "https://omni.example.com/u/tok123",
        "metadata": {"campaign": 3},
    }
    values.update(fields)
    return OutgoingMessage(**values)


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_email_reaches_the_smtp_server_with_both_alternatives_and_unsubscribe(smtp_server):
    result = EmailBackend().send(reminder())

    assert result == DeliveryResult(provider_id="<omni-message-42@omni.example.com>")
    assert result.delivered is False
    assert EmailBackend.idempotent is False
    [(_, mail_from, rcpt_tos, raw)] = smtp_server.received
    assert (mail_from, rcpt_tos) == ("news@shop.example.com", ["lea@example.com"])
    sent = parse(raw)
    assert sent["Subject"] == "Léa, votre panier vous attend"
    assert sent["From"] == SENDER
    assert sent["To"] == "lea@example.com"
    assert sent["Message-ID"] == "<omni-message-42@omni.example.com>"
    assert sent.get_all("Message-ID") == ["<omni-message-42@omni.example.com>"]
    assert sent["X-Omni-Message"] == "42"
    assert sent["List-Unsubscribe"] == "<https://omni.example.com/u/tok123>"
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent.get_content_type() == "multipart/alternative"
    parts = list(sent.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    # Lines end in CRLF on the wire (RFC 5321).
    assert parts[0].get_content() == "Bonjour Léa,\r\nVotre panier vous attend.\r\n"
    assert parts[1].get_content() == "<p>Bonjour L&eacute;a,</p><p>Votre panier vous attend.</p>"


def test_text_only_email_has_no_alternative_and_no_unsubscribe_headers(smtp_server):
    EmailBackend(from_email="Store <store@shop.example.com>").send(
        reminder(7, html="", unsubscribe_url="", subject="Votre reçu")
    )

    [(_, mail_from, _, raw)] = smtp_server.received
    sent = parse(raw)
    assert mail_from == "store@shop.example.com"
    assert sent["From"] == "Store <store@shop.example.com>"
    assert sent["Subject"] == "Votre reçu"
    assert sent.get_content_type() == "text/plain"
    assert sent.get_content() == "Bonjour Léa,\r\nVotre panier vous attend.\r\n"
    assert sent["List-Unsubscribe"] is None
    assert sent["List-Unsubscribe-Post"] is None
    assert sent["Message-ID"] == "<omni-message-7@omni.example.com>"


def test_a_refused_recipient_is_a_permanent_error(smtp_server):
    with pytest.raises(PermanentDeliveryError) as caught:
        EmailBackend().send(reminder(to="refused@example.com"))

    assert str(caught.value) == (
        "Recipient refused: refused@example.com: "
        "550 5.1.1 <refused@example.com>: Recipient address rejected"
    )
    assert smtp_server.received == []


def test_a_deferred_recipient_is_a_transient_error(smtp_server):
    with pytest.raises(TransientDeliveryError) as caught:
        EmailBackend().send(reminder(to="busy@example.com"))

    assert str(caught.value) == (
        "Recipient deferred: busy@example.com: 450 4.2.1 Mailbox busy, try again later"
    )
    assert smtp_server.received == []


def test_a_server_that_is_down_is_a_transient_error(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there
    settings.EMAIL_TIMEOUT = 5

    with pytest.raises(TransientDeliveryError) as caught:
        EmailBackend().send(reminder())

    assert str(caught.value).startswith("SMTP server unavailable: ConnectionRefusedError(")


def test_send_many_shares_one_connection_and_reports_each_message(smtp_server):
    results = EmailBackend().send_many(
        [reminder(1), reminder(2, to="refused@example.com"), reminder(3, to="max@example.com")]
    )

    assert results[0] == DeliveryResult(provider_id="<omni-message-1@omni.example.com>")
    assert type(results[1]) is PermanentDeliveryError
    assert results[2] == DeliveryResult(provider_id="<omni-message-3@omni.example.com>")
    assert [rcpt for _, _, rcpt, _ in smtp_server.received] == [
        ["lea@example.com"],
        ["max@example.com"],
    ]
    peers = {peer for peer, _, _, _ in smtp_server.received}
    assert len(peers) == 1


def test_send_many_reconnects_after_a_dropped_connection(smtp_server):
    results = EmailBackend().send_many(
        [reminder(1), reminder(2, to="hangup@example.com"), reminder(3)]
    )

    assert results[0] == DeliveryResult(provider_id="<omni-message-1@omni.example.com>")
    # Dropped after DATA: the server may hold it; SMTP cannot dedupe, so not retried.
    assert type(results[1]) is OutcomeUnknownError
    assert str(results[1]).startswith(
        "The connection to the SMTP server broke while sending (SMTPServerDisconnected("
    )
    assert results[2] == DeliveryResult(provider_id="<omni-message-3@omni.example.com>")
    assert len({peer for peer, _, _, _ in smtp_server.received}) == 2


def test_send_many_with_the_server_down_fails_the_batch_without_waiting(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()

    results = EmailBackend().send_many([reminder(1), reminder(2)])

    assert [type(result) for result in results] == [TransientDeliveryError] * 2
    assert results[0] is results[1]


def test_a_header_with_a_line_break_is_a_permanent_error(smtp_server):
    with pytest.raises(PermanentDeliveryError) as caught:
        EmailBackend().send(reminder(subject="Hello\nBcc: everyone@example.com"))

    assert str(caught.value).startswith("Invalid message: Header values can't contain newlines")
    assert smtp_server.received == []


def test_the_file_backend_writes_under_its_folder_and_counts_as_delivered(settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "email")
    settings.OMNI_SITE_URL = "http://localhost:8000"

    results = EmailBackend().send_many([reminder(1), reminder(2)])

    assert results == [
        DeliveryResult(provider_id="<omni-message-1@localhost>", delivered=True),
        DeliveryResult(provider_id="<omni-message-2@localhost>", delivered=True),
    ]
    [name] = os.listdir(tmp_path / "email")  # one file per batch (one connection)
    content = (tmp_path / "email" / name).read_text()
    assert content.count("Message-ID: <omni-message-") == 2
    assert "List-Unsubscribe: <https://omni.example.com/u/tok123>" in content


def test_the_memory_backend_in_tests_keeps_the_email(mailoutbox, settings):
    settings.OMNI_SITE_URL = "https://omni.example.com"

    result = EmailBackend().send(reminder())

    assert result == DeliveryResult(
        provider_id="<omni-message-42@omni.example.com>", delivered=True
    )
    [sent] = mailoutbox
    assert (sent.subject, sent.to, sent.alternatives[0].mimetype) == (
        "Léa, votre panier vous attend",
        ["lea@example.com"],
        "text/html",
    )
