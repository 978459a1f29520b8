"""The one interface every delivery backend implements.

The send task hands a backend an ``OutgoingMessage`` (already rendered, address chosen) and
gets a ``DeliveryResult`` back, or one of two errors: ``TransientDeliveryError`` (try again
later, with backoff) or ``PermanentDeliveryError`` (give up: a bad address, a 4xx).

``idempotent`` says whether handing the same ``message_id`` twice is harmless (the local
outbox overwrites one file per message; the HTTP gateway dedupes on the ``Idempotency-Key``
header). The send task only retries a message whose outcome is unknown (its worker died while
sending) on an idempotent backend; otherwise it marks it failed for staff to look at, so a
crash never sends a message twice.
"""

from dataclasses import dataclass, field


@dataclass
class OutgoingMessage:
    message_id: int
    channel_code: str
    channel_kind: str  # email, sms, push or social_dm
    to: str  # email address, E.164 phone, app device id or network:handle
    subject: str = ""  # email subject or push title
    text: str = ""  # email plain text, SMS text, push body or social message
    html: str = ""  # email HTML
    unsubscribe_url: str = ""  # one-click unsubscribe (List-Unsubscribe for email)
    metadata: dict = field(default_factory=dict)  # campaign, step, customer ids

    @property
    def idempotency_key(self) -> str:
        return f"omni-message-{self.message_id}"


@dataclass
class DeliveryResult:
    provider_id: str = ""
    delivered: bool = False  # the backend knows it reached the recipient


class DeliveryError(Exception):
    pass


class TransientDeliveryError(DeliveryError):
    """Worth retrying: a timeout, a refused connection, a 5xx, an SMTP 4xx."""


class PermanentDeliveryError(DeliveryError):
    """Not worth retrying: a refused address, an HTTP 4xx, an SMTP 5xx."""


class OutcomeUnknownError(DeliveryError):
    """The message may have been delivered: the connection broke or timed out after the
    backend handed it over (an SMTP server silent after DATA). Retried only on an
    idempotent backend; otherwise failed, so that it is never sent twice."""


class DeliveryBackend:
    idempotent = False

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        raise NotImplementedError

    def send_many(self, messages: list[OutgoingMessage]) -> list:
        """One result per message, in order: a ``DeliveryResult`` or the ``DeliveryError``
        raised for it. Backends that can batch (one SMTP connection) override this."""
        results = []
        for message in messages:
            try:
                results.append(self.send(message))
            except DeliveryError as error:
                results.append(error)
        return results
