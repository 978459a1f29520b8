"""Email through Django's email machinery: ``EMAIL_BACKEND`` decides where it goes (SMTP in
production, files under ``var/outbox/email`` in development, memory in tests).

Each message is a ``multipart/alternative`` with the plain text first and the HTML second
(plain text only when there is no HTML), from ``DEFAULT_FROM_EMAIL``, with:

- ``Message-ID: <omni-message-<id>@<site domain>>``, the same on every attempt, so a receiver
  can drop a copy it already has; it is also the result's ``provider_id``;
- ``X-Omni-Message: <id>``, for bounce handling and support;
- ``List-Unsubscribe: <url>`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
  (RFC 8058) when the message has an unsubscribe link.

``send_many`` sends a batch over one connection. When the server cannot be reached, the rest
of the batch fails with the same transient error instead of waiting for each message; when a
connection drops halfway, the next message opens a new one.

Errors: a refused recipient, sender or message with an SMTP 5xx code, an invalid address or
header are permanent; an SMTP 4xx code, a refused or dropped connection, a timeout, a TLS
error and a failed login (the server's settings, not the message, are wrong) are transient.

``delivered`` is false for SMTP: a server that accepts a message has only taken it on, and a
bounce can still come. It is true for the development backends that keep the message where a
person reads it (file, console, memory), as the local outbox does for other channels.
SMTP is not idempotent: a message whose outcome is unknown is not sent again.
"""

import logging
import smtplib
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.console import EmailBackend as ConsoleBackend
from django.core.mail.backends.locmem import EmailBackend as MemoryBackend
from django.core.mail.message import DNS_NAME
from django.utils.html import strip_tags

from campaigns.backends.base import (
    DeliveryBackend,
    DeliveryError,
    DeliveryResult,
    OutcomeUnknownError,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)

logger = logging.getLogger(__name__)

# Django email backends that keep the message locally (the file backend is a console backend).
LOCAL_EMAIL_BACKENDS = (ConsoleBackend, MemoryBackend)


def message_id_domain() -> str:
    """The domain of Message-IDs: the host of ``OMNI_SITE_URL``."""
    host = urlsplit(settings.OMNI_SITE_URL).hostname or str(DNS_NAME)
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return "localhost"


def message_id_header(message: OutgoingMessage, domain: str | None = None) -> str:
    return f"<{message.idempotency_key}@{domain or message_id_domain()}>"


def delivery_error(error: Exception) -> DeliveryError:
    """The delivery error an exception from sending an email stands for."""
    if isinstance(error, DeliveryError):
        return error
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        refusals = error.recipients.items()
        detail = "; ".join(f"{address}: {_reply(code, text)}" for address, (code, text) in refusals)
        if any(code >= 500 for _, (code, _) in refusals):
            return PermanentDeliveryError(f"Recipient refused: {detail}")
        return TransientDeliveryError(f"Recipient deferred: {detail}")
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return TransientDeliveryError(
            f"SMTP login refused (check EMAIL_URL): {_reply(error.smtp_code, error.smtp_error)}"
        )
    if isinstance(error, smtplib.SMTPResponseException):
        reply = _reply(error.smtp_code, error.smtp_error)
        if 500 <= error.smtp_code < 600:
            return PermanentDeliveryError(f"SMTP server refused the message: {reply}")
        return TransientDeliveryError(f"SMTP server deferred the message: {reply}")
    if isinstance(error, (ValueError, UnicodeError)):
        # An invalid address or a header with a line break (BadHeaderError).
        return PermanentDeliveryError(f"Invalid message: {error}")
    if isinstance(error, OSError):
        # Refused or dropped connections, timeouts, TLS and DNS errors, SMTPServerDisconnected.
        return TransientDeliveryError(f"SMTP server unavailable: {error!r}")
    logger.exception("Unexpected error while sending an email")
    # The outcome is unknown and SMTP is not idempotent: do not try again.
    return PermanentDeliveryError(f"Unexpected error while sending: {error!r}")


def _reply(code, text) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


def _connection_lost(error: Exception) -> bool:
    """Whether the connection is unusable after this error (a reply code leaves it open)."""
    return isinstance(error, OSError) and not isinstance(
        error, (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused)
    )


class EmailBackend(DeliveryBackend):
    """``from_email`` defaults to ``settings.DEFAULT_FROM_EMAIL``."""

    idempotent = False

    def __init__(self, from_email: str | None = None):
        self.from_email = from_email

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        (result,) = self.send_many([message])
        if isinstance(result, DeliveryError):
            raise result
        return result

    def send_many(self, messages: list[OutgoingMessage]) -> list:
        if not messages:
            return []
        connection = get_connection(fail_silently=False)
        delivered = isinstance(connection, LOCAL_EMAIL_BACKENDS)
        domain = message_id_domain()
        results: list = []
        unreachable: DeliveryError | None = None
        is_open = False
        try:
            for message in messages:
                if unreachable is not None:
                    results.append(unreachable)
                    continue
                if not is_open:
                    try:
                        connection.open()
                    except Exception as error:
                        unreachable = delivery_error(error)
                        results.append(unreachable)
                        continue
                    is_open = True
                message_id = message_id_header(message, domain)
                try:
                    email = self.email_message(message, message_id=message_id)
                    email.connection = connection
                    if connection.send_messages([email]) != 1:
                        raise PermanentDeliveryError("The email has no recipient.")
                except Exception as error:
                    if _connection_lost(error):
                        # Mid-conversation: the server may already hold the email (a reply
                        # lost after DATA). SMTP cannot dedupe, so this is not retried.
                        results.append(
                            OutcomeUnknownError(
                                f"The connection to the SMTP server broke while sending "
                                f"({error!r}): the email may have been accepted."
                            )
                        )
                        self._close(connection)
                        is_open = False
                    else:
                        results.append(delivery_error(error))
                    continue
                results.append(DeliveryResult(provider_id=message_id, delivered=delivered))
        finally:
            if is_open:
                self._close(connection)
        return results

    def email_message(
        self, message: OutgoingMessage, *, message_id: str | None = None
    ) -> EmailMultiAlternatives:
        """The Django email for a message (not sent)."""
        headers = {
            "Message-ID": message_id or message_id_header(message),
            "X-Omni-Message": str(message.message_id),
        }
        if message.unsubscribe_url:
            headers["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text or (strip_tags(message.html).strip() if message.html else ""),
            from_email=self.from_email or settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            headers=headers,
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    @staticmethod
    def _close(connection) -> None:
        try:
            connection.close()
        except Exception:  # the messages are sent; a failed QUIT changes nothing
            logger.warning("Closing the email connection failed", exc_info=True)
