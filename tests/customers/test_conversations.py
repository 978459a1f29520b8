"""Conversations: messages from any channel append to the customer's one thread."""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import (
    Conversation,
    ConversationMessage,
    CustomerChannelStat,
    Touchpoint,
)
from customers.services import (
    conversation_message_add,
    conversation_reply,
    conversation_update,
    customer_erase,
    customer_merge,
)
from customers.services.conversations import MAX_BODY
from omni.exceptions import Conflict, ValidationFailed
from omni.models import OutboxEvent
from tests.customers.conftest import at

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(make_customer):
    return make_customer(("email", "ana@example.com"), created_at=at(-60))


@pytest.fixture
def bob(make_customer):
    return make_customer(("email", "bob@example.com"), created_at=at(-50))


def add(customer, channel, body, **kwargs):
    kwargs.setdefault("source", "client:9")
    return conversation_message_add(customer=customer, channel=channel, body=body, **kwargs)


def test_messages_from_two_channels_append_to_one_conversation(ana, channels):
    first, created = add(
        ana,
        channels["social-dm"],
        "  My parcel never came\nOrder 1234  ",
        external_id="dm-1",
        sent_at=at(-2),
    )
    assert created is True
    second, created = add(
        ana, channels["email"], "Here is the receipt.", external_id="mail-1", sent_at=at(-1)
    )
    assert created is True

    conversation = Conversation.objects.get()
    assert first.conversation_id == second.conversation_id == conversation.pk
    assert (
        conversation.customer_id,
        conversation.subject,
        conversation.status,
        conversation.started_on_id,
        conversation.created_at,
        conversation.last_message_at,
        conversation.closed_at,
    ) == (ana.pk, "My parcel never came", "open", channels["social-dm"].pk, at(-2), at(-1), None)
    assert list(conversation.messages.values_list("channel__code", "direction", "body")) == [
        ("social-dm", "inbound", "My parcel never came\nOrder 1234"),
        ("email", "inbound", "Here is the receipt."),
    ]
    assert list(
        Touchpoint.objects.filter(customer=ana)
        .order_by("occurred_at")
        .values_list("kind", "channel__code", "source", "event_id", "properties")
    ) == [
        (
            "support_message",
            "social-dm",
            "omni:conversation",
            str(first.pk),
            {"conversation": conversation.pk, "direction": "inbound"},
        ),
        (
            "support_message",
            "email",
            "omni:conversation",
            str(second.pk),
            {"conversation": conversation.pk, "direction": "inbound"},
        ),
    ]


def test_the_subject_is_the_first_line_unless_given(ana, bob, channels):
    add(ana, channels["email"], "Hello\nI have a question", sent_at=at(-1))
    add(bob, channels["email"], "Hello", subject="Refund " + "x" * 300, sent_at=at(-1))
    assert Conversation.objects.get(customer=ana).subject == "Hello"
    assert Conversation.objects.get(customer=bob).subject == ("Refund " + "x" * 300)[:200]


def test_a_repeated_external_id_returns_the_same_message(ana, channels):
    message, created = add(ana, channels["social-dm"], "Hi", external_id="dm-1", sent_at=at(-1))

    again, created_again = add(
        ana, channels["social-dm"], "Hi (resent)", external_id=" dm-1 ", sent_at=at(-1)
    )

    assert (created, created_again) == (True, False)
    assert again.pk == message.pk
    assert ConversationMessage.objects.get().body == "Hi"
    assert Touchpoint.objects.count() == 1
    # The same id from another sender is another message.
    _, created_elsewhere = add(
        ana, channels["social-dm"], "Hi", external_id="dm-1", source="client:10", sent_at=at(-1)
    )
    assert created_elsewhere is True
    assert ConversationMessage.objects.count() == 2


def test_a_replay_from_a_long_sender_name_is_found(ana, channels):
    sender = "integration:" + "x" * 100
    first, created = add(ana, channels["email"], "Hi", external_id="m-1", source=sender)
    again, created_again = add(ana, channels["email"], "Hi", external_id="m-1", source=sender)
    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert first.source == sender[:80]
    assert ConversationMessage.objects.count() == 1


def test_messages_without_external_id_are_all_kept(ana, channels):
    add(ana, channels["email"], "One", sent_at=at(-2))
    add(ana, channels["email"], "One", sent_at=at(-2))
    assert ConversationMessage.objects.count() == 2
    assert Conversation.objects.count() == 1


def test_a_message_sent_earlier_keeps_the_latest_time(ana, channels):
    add(ana, channels["email"], "Later", sent_at=at(-1))
    add(ana, channels["email"], "Delayed", sent_at=at(-3))
    assert Conversation.objects.get().last_message_at == at(-1)


def test_a_recently_closed_conversation_reopens(ana, channels, staff_user):
    message, _ = add(ana, channels["email"], "Help", sent_at=at(-1))
    conversation = message.conversation
    closed = conversation_update(conversation=conversation, status="closed", actor=staff_user)
    assert closed.status == "closed"
    assert closed.closed_at is not None

    again, _ = add(ana, channels["sms"], "Still broken")

    assert again.conversation_id == conversation.pk
    conversation.refresh_from_db()
    assert (conversation.status, conversation.closed_at) == ("open", None)
    assert Conversation.objects.count() == 1


def test_a_long_closed_conversation_gives_way_to_a_new_one(ana, channels):
    message, _ = add(ana, channels["email"], "Help", sent_at=at(-30))
    old = message.conversation
    Conversation.objects.filter(pk=old.pk).update(
        status="closed", closed_at=timezone.now() - timedelta(days=8)
    )

    new, _ = add(ana, channels["push"], "New question")

    assert new.conversation_id != old.pk
    assert Conversation.objects.count() == 2
    old.refresh_from_db()
    assert old.status == "closed"
    assert Conversation.objects.get(pk=new.conversation_id).started_on_id == channels["push"].pk


def test_the_open_conversation_is_preferred_to_a_recently_closed_one(ana, channels):
    closed_message, _ = add(ana, channels["email"], "Old", sent_at=at(-3))
    Conversation.objects.filter(pk=closed_message.conversation_id).update(
        status="closed", closed_at=timezone.now() - timedelta(days=1)
    )
    open_conversation = Conversation.objects.create(
        customer=ana,
        started_on=channels["sms"],
        created_at=at(-5),
        last_message_at=at(-5),
    )

    message, _ = add(ana, channels["email"], "Question")

    assert message.conversation_id == open_conversation.pk


def test_a_staff_reply_is_outbound_waiting_and_handed_on(ana, channels, staff_user):
    question, _ = add(ana, channels["social-dm"], "Is it in stock?", sent_at=at(-1))
    conversation = question.conversation

    reply = conversation_reply(
        conversation=conversation, channel=channels["email"], body="Yes, size M.", author=staff_user
    )

    assert (reply.direction, reply.channel_id, reply.author_id, reply.source, reply.body) == (
        "outbound",
        channels["email"].pk,
        staff_user.pk,
        f"user:{staff_user.pk}",
        "Yes, size M.",
    )
    conversation.refresh_from_db()
    assert conversation.status == "waiting"
    assert conversation.messages.count() == 2
    event = OutboxEvent.objects.get(type="conversation.reply")
    assert (event.subject_type, event.subject_id, event.payload) == (
        "conversation",
        str(conversation.pk),
        {"message": reply.pk, "channel": "email", "customer": ana.pk},
    )
    sent = Touchpoint.objects.get(kind="message_sent")
    assert (sent.channel_id, sent.event_id, sent.properties) == (
        channels["email"].pk,
        str(reply.pk),
        {"conversation": conversation.pk, "direction": "outbound"},
    )

    # The customer's answer makes it open again.
    add(ana, channels["email"], "Thanks")
    conversation.refresh_from_db()
    assert conversation.status == "open"


def test_messages_count_as_channel_use(ana, channels):
    add(ana, channels["social-dm"], "Hi", sent_at=at(-2))
    stat = CustomerChannelStat.objects.get(customer=ana)
    assert (stat.channel_id, stat.touchpoints) == (channels["social-dm"].pk, 1)


# --- Refusals ---------------------------------------------------------------------------------


def test_another_customer_s_conversation_is_refused(ana, bob, channels):
    message, _ = add(ana, channels["email"], "Mine", sent_at=at(-1))

    with pytest.raises(ValidationFailed) as error:
        add(bob, channels["email"], "Not mine", conversation=message.conversation)

    assert error.value.code == "validation_error"
    assert error.value.extra == {"conversation": ["Belongs to another customer."]}
    assert ConversationMessage.objects.count() == 1
    assert Conversation.objects.count() == 1
    assert Touchpoint.objects.count() == 1


def test_bad_messages_are_refused_with_every_problem(ana, channels):
    channels["sms"].is_active = False
    channels["sms"].save()
    with pytest.raises(ValidationFailed) as error:
        add(ana, channels["sms"], "   ", sent_at="soon")
    assert error.value.extra == {
        "channel": ["Channel sms is inactive."],
        "body": ["The message is empty."],
        "sent_at": ["Not an ISO 8601 date and time."],
    }
    with pytest.raises(ValidationFailed) as error:
        add(ana, None, "x" * (MAX_BODY + 1), sent_at=timezone.now() + timedelta(hours=1))
    assert error.value.extra == {
        "channel": ["Required."],
        "body": ["At most 20,000 characters."],
        "sent_at": ["Lies in the future."],
    }
    with pytest.raises(ValidationFailed) as error:
        add(ana, channels["email"], "Hi", external_id="x" * 201)
    assert error.value.extra == {"external_id": ["At most 200 characters."]}
    with pytest.raises(ValidationFailed) as error:
        add(ana, channels["email"], "Hi", direction="sideways")
    assert error.value.extra == {"direction": ["inbound or outbound."]}
    with pytest.raises(ValidationFailed) as error:
        add(ana, channels["email"], 42)
    assert error.value.extra == {"body": ["The message is empty."]}
    assert ConversationMessage.objects.count() == 0
    assert Conversation.objects.count() == 0


def test_an_erased_or_merged_customer_gets_no_message(ana, bob, make_customer, channels):
    customer_erase(customer=ana, source="test")
    with pytest.raises(Conflict) as error:
        add(ana, channels["email"], "Hello?")
    assert error.value.code == "customer_erased"

    older = make_customer(("phone", "+33612345678"), created_at=at(-90))
    customer_merge(customers=[bob, older])
    with pytest.raises(Conflict) as error:
        add(bob, channels["email"], "Hello?")
    assert error.value.code == "customer_gone"
    assert ConversationMessage.objects.count() == 0


# --- Status and assignment --------------------------------------------------------------------


def test_conversation_update_closes_reopens_and_assigns(ana, channels, staff_user):
    message, _ = add(ana, channels["email"], "Help", sent_at=at(-1))
    conversation = message.conversation

    assigned = conversation_update(conversation=conversation, assignee=staff_user)
    assert (assigned.assignee_id, assigned.status) == (staff_user.pk, "open")

    closed = conversation_update(conversation=conversation, status="closed")
    assert closed.status == "closed"
    assert closed.closed_at is not None
    assert closed.assignee_id == staff_user.pk  # not given: unchanged

    reopened = conversation_update(conversation=conversation, status="open", assignee=None)
    assert (reopened.status, reopened.closed_at, reopened.assignee_id) == ("open", None, None)


def test_conversation_update_refuses_bad_status_and_non_staff(ana, channels, django_user_model):
    message, _ = add(ana, channels["email"], "Help", sent_at=at(-1))
    clerk = django_user_model.objects.create_user(username="clerk", password="pw")

    with pytest.raises(ValidationFailed) as error:
        conversation_update(conversation=message.conversation, status="solved")
    assert error.value.extra == {"status": ["One of: open, waiting, closed."]}
    with pytest.raises(ValidationFailed) as error:
        conversation_update(conversation=message.conversation, assignee=clerk)
    assert error.value.extra == {"assignee": ["Not a staff user."]}
    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.assignee_id) == ("open", None)
