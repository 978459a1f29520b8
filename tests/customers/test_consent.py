"""Consent per customer and messaging channel: history kept, the latest decision wins."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from customers.models import Consent, ConsentState, Touchpoint
from customers.selectors import consent_current, customers_contactable, may_message
from customers.services import consent_record, customer_erase, customer_merge
from omni.exceptions import Conflict, ValidationFailed
from tests.customers.conftest import at

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(make_customer):
    return make_customer(("email", "ana@example.com"), created_at=at(-60))


@pytest.fixture
def bob(make_customer):
    return make_customer(("email", "bob@example.com"), created_at=at(-50))


def record(customer, channel, status, when, source="web form", **kwargs):
    return consent_record(
        customer=customer, channel=channel, status=status, source=source, occurred_at=when, **kwargs
    )


def state(customer, channel):
    return ConsentState.objects.get(customer=customer, channel=channel)


def test_a_decision_is_recorded_with_its_proof_and_becomes_current(ana, channels, staff_user):
    before = timezone.now()
    consent = record(
        ana,
        channels["email"],
        "opted_in",
        at(-3),
        source="Newsletter form",
        proof="IP 203.0.113.7",
        actor=staff_user,
    )

    row = Consent.objects.get()
    assert row.pk == consent.pk
    assert (row.customer_id, row.channel_id, row.status, row.source, row.occurred_at) == (
        ana.pk,
        channels["email"].pk,
        "opted_in",
        "Newsletter form",
        at(-3),
    )
    assert (row.proof, row.recorded_by_id) == ("IP 203.0.113.7", staff_user.pk)
    assert row.recorded_at >= before
    current = state(ana, channels["email"])
    assert (current.status, current.occurred_at, current.consent_id) == (
        "opted_in",
        at(-3),
        consent.pk,
    )


def test_the_change_is_on_the_timeline(ana, channels):
    consent = record(ana, channels["sms"], "opted_out", at(-2), source="store")

    touchpoint = Touchpoint.objects.get(customer=ana)
    assert (
        touchpoint.kind,
        touchpoint.channel_id,
        touchpoint.occurred_at,
        touchpoint.source,
        touchpoint.event_id,
        touchpoint.properties,
    ) == (
        "consent_changed",
        channels["sms"].pk,
        at(-2),
        "omni:consent",
        str(consent.pk),
        {"status": "opted_out", "source": "store"},
    )


def test_history_is_kept_and_the_latest_wins(ana, channels):
    email = channels["email"]
    first = record(ana, email, "opted_in", at(-30))
    second = record(ana, email, "opted_out", at(-10))
    third = record(ana, email, "opted_in", at(-1))

    assert list(Consent.objects.filter(customer=ana).values_list("pk", "status")) == [
        (third.pk, "opted_in"),
        (second.pk, "opted_out"),
        (first.pk, "opted_in"),
    ]
    assert (state(ana, email).status, state(ana, email).consent_id) == ("opted_in", third.pk)
    assert ConsentState.objects.count() == 1


def test_a_decision_recorded_late_does_not_override_a_newer_one(ana, channels):
    email = channels["email"]
    newer = record(ana, email, "opted_out", at(-1))
    older = record(ana, email, "opted_in", at(-20), source="paper form")

    assert Consent.objects.filter(customer=ana).count() == 2
    current = state(ana, email)
    assert (current.status, current.occurred_at, current.consent_id) == (
        "opted_out",
        at(-1),
        newer.pk,
    )
    assert not may_message(ana, email)
    assert older.pk in set(Consent.objects.values_list("pk", flat=True))


def test_of_two_decisions_at_the_same_moment_the_last_recorded_wins(ana, channels):
    email = channels["email"]
    record(ana, email, "opted_in", at(-1))
    last = record(ana, email, "opted_out", at(-1))
    assert state(ana, email).consent_id == last.pk


def test_channels_are_independent(ana, channels):
    record(ana, channels["email"], "opted_in", at(-5))
    record(ana, channels["sms"], "opted_out", at(-4))
    record(ana, channels["push"], "opted_in", at(-3))

    assert {channel_id: s.status for channel_id, s in consent_current(ana.pk).items()} == {
        channels["email"].pk: "opted_in",
        channels["sms"].pk: "opted_out",
        channels["push"].pk: "opted_in",
    }


def test_time_may_come_as_text_or_default_to_now(ana, channels):
    consent = record(ana, channels["email"], "opted_in", "2026-03-01T10:00:00+01:00")
    assert consent.occurred_at == at(-1)
    before = timezone.now()
    later = record(ana, channels["sms"], "opted_in", None)
    assert before <= later.occurred_at <= timezone.now()
    assert state(ana, channels["sms"]).occurred_at == later.occurred_at


# --- Selectors --------------------------------------------------------------------------------


def test_may_message_only_with_a_current_opt_in(ana, bob, channels):
    email, sms = channels["email"], channels["sms"]
    record(ana, email, "opted_in", at(-5))
    record(bob, email, "opted_in", at(-9))
    record(bob, email, "opted_out", at(-2))

    assert may_message(ana, email) is True
    assert may_message(ana.pk, email.pk) is True
    assert may_message(ana, sms) is False  # never asked
    assert may_message(bob, email) is False
    assert may_message(ana, email, at=at(-6)) is False  # not yet given then


def test_may_message_is_one_query(ana, channels, django_assert_num_queries):
    record(ana, channels["email"], "opted_in", at(-5))
    with django_assert_num_queries(1):
        assert may_message(ana, channels["email"])


def test_customers_contactable_on_a_channel(ana, bob, make_customer, channels):
    cleo = make_customer(("email", "cleo@example.com"), created_at=at(-40))
    email, sms = channels["email"], channels["sms"]
    record(ana, email, "opted_in", at(-5))
    record(bob, email, "opted_out", at(-5))
    record(cleo, email, "opted_in", at(-5))
    record(cleo, sms, "opted_in", at(-5))

    assert set(customers_contactable(email)) == {ana, cleo}
    assert list(customers_contactable(sms)) == [cleo]
    assert list(customers_contactable(channels["push"])) == []

    customer_erase(customer=cleo, source="test")
    assert list(customers_contactable(email)) == [ana]
    assert may_message(cleo, email) is False


# --- Refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["web", "pos", "app", "social"])
def test_consent_on_a_sales_channel_is_refused(ana, channels, code):
    with pytest.raises(ValidationFailed) as error:
        record(ana, channels[code], "opted_in", at(-1))
    assert error.value.code == "validation_error"
    assert error.value.extra == {
        "channel": ["Consent is given per messaging channel (email, SMS, push, ...)."]
    }
    assert Consent.objects.count() == 0
    assert Touchpoint.objects.count() == 0


def test_every_problem_is_reported_at_once(ana, channels):
    with pytest.raises(ValidationFailed) as error:
        consent_record(
            customer=ana, channel=None, status="maybe", source="  ", occurred_at="tomorrow"
        )
    assert error.value.extra == {
        "channel": ["Consent is given per messaging channel (email, SMS, push, ...)."],
        "status": ["One of: opted_in, opted_out."],
        "source": ["Say where the customer gave it (web form, store, ...)."],
        "occurred_at": ["Not an ISO 8601 date and time."],
    }
    with pytest.raises(ValidationFailed) as error:
        record(ana, channels["email"], "opted_in", timezone.now() + timedelta(hours=1), "x" * 81)
    assert error.value.extra == {
        "source": ["At most 80 characters."],
        "occurred_at": ["Lies in the future."],
    }
    assert Consent.objects.count() == 0


def test_an_erased_or_merged_customer_gets_no_consent(ana, bob, make_customer, channels):
    customer_erase(customer=ana, source="test")
    with pytest.raises(Conflict) as error:
        record(ana, channels["email"], "opted_in", at(-1))
    assert error.value.code == "customer_erased"

    older = make_customer(("phone", "+33612345678"), created_at=at(-90))
    customer_merge(customers=[bob, older])
    with pytest.raises(Conflict) as error:
        record(bob, channels["email"], "opted_in", at(-1))
    assert error.value.code == "customer_gone"
    assert Consent.objects.count() == 0
    assert Touchpoint.objects.count() == 0


def test_an_anonymous_actor_is_not_recorded(ana, channels):
    consent = record(ana, channels["email"], "opted_in", at(-1), actor=AnonymousUser())
    assert consent.recorded_by_id is None
