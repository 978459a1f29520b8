"""Conversations: one support thread per matter, whatever channel each message comes from.

A message from the customer on any channel joins her open conversation (or reopens the latest
one of the last days), so the person answering sees the whole history; staff replies are
recorded on the channel they choose and handed on as an outbox event for delivery.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from customers.models import (
    Conversation,
    ConversationMessage,
    ConversationStatus,
    Customer,
    MessageDirection,
    TouchpointKind,
)
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.formats import parse_past_time
from omni.models import Channel
from omni.services import outbox_emit

from .common import customer_lock

MAX_BODY = 20_000
# A message arriving this soon after a conversation was closed reopens it.
REOPEN_WITHIN = timedelta(days=7)
STATUSES = tuple(s.value for s in ConversationStatus)


def _check(channel, body, sent_at, now) -> tuple[str, datetime]:
    errors = {}
    if channel is None:
        errors["channel"] = ["Required."]
    elif not channel.is_active:
        errors["channel"] = [f"Channel {channel.code} is inactive."]
    body = (body or "").strip() if isinstance(body, str) else ""
    if not body:
        errors["body"] = ["The message is empty."]
    elif len(body) > MAX_BODY:
        errors["body"] = [f"At most {MAX_BODY:,} characters."]
    moment, time_error = parse_past_time(sent_at, now)
    if time_error:
        errors["sent_at"] = [time_error]
    if errors:
        raise ValidationFailed(
            "The message was not added: " + " ".join(m for v in errors.values() for m in v),
            extra=errors,
        )
    return body, moment


def _pick_conversation(customer: Customer, conversation: Conversation | None, now):
    if conversation is not None:
        if conversation.customer_id != customer.pk:
            raise ValidationFailed(
                f"Conversation {conversation.pk} belongs to another customer.",
                extra={"conversation": ["Belongs to another customer."]},
            )
        return conversation
    current = (
        Conversation.objects.filter(customer=customer)
        .exclude(status=ConversationStatus.CLOSED)
        .order_by("-last_message_at", "-id")
        .first()
    )
    if current is not None:
        return current
    return (
        Conversation.objects.filter(
            customer=customer,
            status=ConversationStatus.CLOSED,
            closed_at__gte=now - REOPEN_WITHIN,
        )
        .order_by("-last_message_at", "-id")
        .first()
    )


@transaction.atomic
def conversation_message_add(
    *,
    customer: Customer,
    channel: Channel,
    body: str,
    source: str,
    direction: str = MessageDirection.INBOUND,
    external_id: str = "",
    sent_at=None,
    subject: str = "",
    conversation: Conversation | None = None,
    author=None,
) -> tuple[ConversationMessage, bool]:
    """Append a message to the customer's conversation (see the module). Returns the message and
    whether it is new: a repeated ``external_id`` from the same sender adds nothing."""
    now = timezone.now()
    body, moment = _check(channel, body, sent_at, now)
    source = (source or "")[:80]  # as stored, so that a replay finds its message
    external_id = (external_id or "").strip()
    if len(external_id) > 200:
        raise ValidationFailed(
            "The message id is too long.", extra={"external_id": ["At most 200 characters."]}
        )
    if direction not in (MessageDirection.INBOUND, MessageDirection.OUTBOUND):
        raise ValidationFailed("Unknown direction.", extra={"direction": ["inbound or outbound."]})
    locked = customer_lock([customer.pk])
    if not locked:
        raise Conflict(f"Customer {customer.pk} no longer exists (merged?).", code="customer_gone")
    if locked[0].erased_at is not None:
        raise Conflict("This customer was erased.", code="customer_erased")
    if external_id:
        existing = (
            ConversationMessage.objects.select_related("conversation")
            .filter(source=source, external_id=external_id)
            .first()
        )
        if existing is not None:
            if existing.conversation.customer_id != customer.pk:
                raise Conflict(
                    f"Message {external_id} from {source} was recorded for another customer.",
                    code="external_id_reused",
                    extra={"external_id": ["Already used for another customer's message."]},
                )
            return existing, False
    thread = _pick_conversation(customer, conversation, now)
    if thread is None:
        first_line = body.splitlines()[0] if body else ""
        thread = Conversation.objects.create(
            customer=customer,
            subject=(subject or first_line)[:200],
            started_on=channel,
            created_at=moment,
            last_message_at=moment,
        )
    message = ConversationMessage.objects.create(
        conversation=thread,
        channel=channel,
        direction=direction,
        body=body,
        author=author if author is not None and author.is_authenticated else None,
        source=source,
        external_id=external_id,
        sent_at=moment,
        created_at=now,
    )
    thread.last_message_at = max(thread.last_message_at, moment)
    thread.status = (
        ConversationStatus.OPEN
        if direction == MessageDirection.INBOUND
        else ConversationStatus.WAITING
    )
    thread.closed_at = None
    thread.save(update_fields=["last_message_at", "status", "closed_at"])
    from .touchpoints import touchpoint_record

    touchpoint_record(
        customer=customer,
        channel=channel,
        kind=TouchpointKind.SUPPORT_MESSAGE
        if direction == MessageDirection.INBOUND
        else TouchpointKind.MESSAGE_SENT,
        source="omni:conversation",
        event_id=str(message.pk),
        occurred_at=moment,
        properties={"conversation": thread.pk, "direction": direction},
    )
    if direction == MessageDirection.OUTBOUND:
        outbox_emit(
            type="conversation.reply",
            subject_type="conversation",
            subject_id=thread.pk,
            payload={"message": message.pk, "channel": channel.code, "customer": customer.pk},
        )
    return message, True


@transaction.atomic
def conversation_message_receive(
    *,
    identifiers,
    channel: Channel,
    body: str,
    source: str,
    customer_id: int | None = None,
    external_id: str = "",
    sent_at=None,
    subject: str = "",
    conversation_id: int | None = None,
    direction: str = MessageDirection.INBOUND,
    actor=None,
) -> tuple[ConversationMessage, bool]:
    """A message from an integrator (social, email, chat): its sender is found by her
    identifiers or customer id through identity resolution, then the message joins her
    conversation. A message recorded already (same sender and ``external_id``) is returned as it
    is, before anyone is resolved: a replay creates, attaches and merges nothing."""
    from .resolution import customer_resolve

    source = (source or "")[:80]
    external_id = (external_id or "").strip()
    if external_id:
        existing = (
            ConversationMessage.objects.select_related("conversation")
            .filter(source=source, external_id=external_id)
            .first()
        )
        if existing is not None:
            return existing, False
    conversation = None
    if conversation_id is not None:
        conversation = Conversation.objects.filter(pk=conversation_id).first()
        if conversation is None:
            raise NotFound(
                f"No conversation {conversation_id}.",
                extra={"conversation": [f"Unknown conversation {conversation_id}."]},
            )
    customer, _ = customer_resolve(
        identifiers=identifiers, customer_id=customer_id, source=source, actor=actor
    )
    # Staff posting an answer through the API are its author; integrators' messages have none.
    author = actor if direction == MessageDirection.OUTBOUND else None
    return conversation_message_add(
        customer=customer,
        channel=channel,
        body=body,
        source=source,
        direction=direction,
        external_id=external_id,
        sent_at=sent_at,
        subject=subject,
        conversation=conversation,
        author=author,
    )


def conversation_reply(*, conversation: Conversation, channel: Channel, body: str, author):
    """A staff answer on ``channel``, recorded and handed on for delivery."""
    message, _ = conversation_message_add(
        customer=conversation.customer,
        channel=channel,
        body=body,
        source=f"user:{author.pk}" if author is not None else "omni",
        direction=MessageDirection.OUTBOUND,
        conversation=conversation,
        author=author,
    )
    return message


@transaction.atomic
def conversation_update(
    *, conversation: Conversation, status: str | None = None, assignee=..., actor=None
) -> Conversation:
    """Close, reopen or (re)assign a conversation."""
    if status is not None and status not in STATUSES:
        raise ValidationFailed(
            f"Unknown status {status!r}.", extra={"status": [f"One of: {', '.join(STATUSES)}."]}
        )
    if assignee is not ... and assignee is not None and not assignee.is_staff:
        raise ValidationFailed(
            "Conversations are assigned to staff.", extra={"assignee": ["Not a staff user."]}
        )
    thread = Conversation.objects.select_for_update().get(pk=conversation.pk)
    fields = []
    if status is not None and status != thread.status:
        thread.status = status
        thread.closed_at = timezone.now() if status == ConversationStatus.CLOSED else None
        fields += ["status", "closed_at"]
    if assignee is not ...:
        thread.assignee = assignee
        fields.append("assignee")
    if fields:
        thread.save(update_fields=fields)
    return thread
