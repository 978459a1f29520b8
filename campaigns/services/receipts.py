"""Delivery receipts from the HTTP gateway: a sent message was delivered, or failed after all.

The gateway posts receipts to ``/api/v1/campaigns/receipts/`` signed as the gateway backend
signs what it sends: ``X-Omni-Timestamp: <unix seconds>`` and ``X-Omni-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<raw body>"`` keyed with
``OMNI_GATEWAY_SECRET``. A receipt whose timestamp is more than
``OMNI_GATEWAY_RECEIPT_TOLERANCE_SECONDS`` (default 300) away from now is refused, so a
captured request cannot be replayed later; within that window a repeat changes nothing, since
recording a receipt is idempotent.

What a receipt does to the message (``receipt_record``):

- ``sent`` -> ``delivered`` (``delivered_at``) or ``failed`` (``failed_at``, reason
  ``undelivered``, the gateway's detail);
- the same receipt again: nothing changes;
- ``failed`` -> ``delivered``: the provider reached the customer after all, delivered wins;
- ``delivered`` -> ``failed``: refused (409 ``receipt_conflict``), a delivery is not undone;
- a message not sent yet (queued, sending, suppressed): refused (409 ``message_not_sent``);
  the gateway may retry, the receipt may have overtaken the sender's own bookkeeping.
"""

import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.backends.gateway import (
    SIGNATURE_HEADER,
    SIGNATURE_TOLERANCE_SECONDS,
    TIMESTAMP_HEADER,
    verify_signature,
)
from campaigns.models import Message, MessageStatus
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.formats import parse_past_time

RECEIPT_STATUSES = (MessageStatus.DELIVERED.value, MessageStatus.FAILED.value)
UNDELIVERED = "undelivered"
MAX_DETAIL = 500
MAX_ID = 2**63

# --- Signatures -------------------------------------------------------------------------------


def receipt_signature_problem(
    *, body: bytes, timestamp: str | None, signature: str | None, now: float | None = None
) -> str | None:
    """Why a receipt's signature is refused, for people; None when it is good. The check is
    the gateway backend's own ``verify_signature`` (the scheme both directions share)."""
    secret = getattr(settings, "OMNI_GATEWAY_SECRET", "") or ""
    if not secret:
        return "Receipts are not accepted: no gateway secret is configured."
    if not signature or not timestamp:
        return f"Sign the receipt: {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required."
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return f"{TIMESTAMP_HEADER} must be a Unix time in seconds."
    tolerance = getattr(
        settings, "OMNI_GATEWAY_RECEIPT_TOLERANCE_SECONDS", SIGNATURE_TOLERANCE_SECONDS
    )
    now = time.time() if now is None else now
    if verify_signature(
        secret=secret,
        body=body,
        timestamp=timestamp,
        signature=signature.strip(),
        tolerance=tolerance,
        now=now,
    ):
        return None
    if abs(now - int(timestamp)) > tolerance:
        return (
            f"The receipt was signed for another time ({TIMESTAMP_HEADER} more than "
            f"{tolerance} seconds from now): refused as a replay."
        )
    return "The signature does not match the body."


# --- Receipts ---------------------------------------------------------------------------------


def message_lock(pk) -> Message | None:
    """The message ``pk``, locked (None if there is none)."""
    return Message.objects.select_for_update().filter(pk=pk).first()


def _message_pk(message_id, provider_id) -> int:
    if message_id is not None:
        if not Message.objects.filter(pk=message_id).exists():
            raise NotFound(f"No message {message_id}.")
        return message_id
    found = list(Message.objects.filter(provider_id=provider_id).values_list("pk", flat=True)[:2])
    if not found:
        raise NotFound(f"No message with provider id {provider_id}.")
    if len(found) > 1:
        raise Conflict(
            f"Several messages have provider id {provider_id}; send the message id.",
            code="provider_id_ambiguous",
        )
    return found[0]


def _validated(status, message_id, provider_id, at, detail, now):
    errors = {}
    if (message_id is None) == (provider_id in (None, "")):
        errors["non_field_errors"] = ["Give the message id or the provider id, not both."]
    if message_id is not None and (
        isinstance(message_id, bool)
        or not isinstance(message_id, int)
        or not 0 < message_id < MAX_ID
    ):
        errors["message_id"] = ["A message id (a whole number)."]
    if provider_id not in (None, "") and not isinstance(provider_id, str):
        errors["provider_id"] = ["A string."]
    if status not in RECEIPT_STATUSES:
        errors["status"] = [f"One of: {', '.join(RECEIPT_STATUSES)}."]
    moment, time_error = parse_past_time(at, now)
    if time_error:
        errors["at"] = [time_error]
    detail = "" if detail is None else detail
    if not isinstance(detail, str):
        errors["detail"] = ["Text."]
    if errors:
        raise ValidationFailed("The receipt is invalid.", extra=errors)
    # A provider clock a little ahead is not an error, but no time is recorded in the future.
    return min(moment, now), detail.strip()[:MAX_DETAIL]


@transaction.atomic
def receipt_record(
    *,
    status: str,
    message_id: int | None = None,
    provider_id: str | None = None,
    at=None,
    detail: str = "",
) -> Message:
    """Record the gateway's delivery receipt for a message, named by its id (what the backend
    sent as ``message_id``) or by the provider's id. Idempotent; ``message.changed`` says
    whether this receipt changed anything."""
    now = timezone.now()
    moment, detail = _validated(status, message_id, provider_id, at, detail, now)
    pk = _message_pk(message_id, provider_id)
    message = message_lock(pk)
    if message is None:
        raise NotFound(f"No message {pk}.")
    message.changed = False
    if message.status == status:
        return message  # a repeat
    if message.status == MessageStatus.DELIVERED:
        raise Conflict(
            f"Message {message.pk} was delivered; a failure receipt cannot undo that.",
            code="receipt_conflict",
        )
    if message.status not in (MessageStatus.SENT, MessageStatus.FAILED):
        raise Conflict(
            f"Message {message.pk} has not been sent (it is {message.status}); nothing changed.",
            code="message_not_sent",
        )
    if status == MessageStatus.DELIVERED:
        message.status = MessageStatus.DELIVERED
        message.delivered_at = moment
        fields = ["status", "delivered_at"]
    else:
        message.status = MessageStatus.FAILED
        message.failed_at = moment
        message.reason = UNDELIVERED
        message.detail = detail
        message.next_attempt_at = None
        fields = ["status", "failed_at", "reason", "detail", "next_attempt_at"]
    message.save(update_fields=fields)
    message.changed = True
    return message
