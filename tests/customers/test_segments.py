"""Segment rules against known customers: exact member sets."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import (
    Customer,
    CustomerChannelStat,
    Segment,
    SegmentRule,
    Touchpoint,
)
from customers.segments import rule_description, rule_errors, segment_queryset
from customers.services import consent_record, segment_count_refresh
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def people(channels, now):
    """Ana (Lyon store, recent buyer, email opt-in, web and store use), Bob (lyon in lower
    case, old buyer, app user, SMS opt-in, email opt-out), Cleo (nothing known) and Dan (big
    spender, erased)."""
    lyon = LocationFactory(code="lyon")
    ana = Customer.objects.create(
        created_at=now - timedelta(days=300),
        first_name="Ana",
        city="Lyon",
        age_range="25_34",
        gender="female",
        language="fr",
        occupation="Teacher",
        home_store=lyon,
        lifetime_orders=3,
        lifetime_revenue=Decimal("150.00"),
        last_purchase_at=now - timedelta(days=5),
        last_seen_at=now - timedelta(days=1),
    )
    bob = Customer.objects.create(
        created_at=now - timedelta(days=300),
        first_name="Bob",
        city="lyon",
        age_range="35_44",
        gender="male",
        language="en",
        lifetime_orders=1,
        lifetime_revenue=Decimal("40.00"),
        last_purchase_at=now - timedelta(days=40),
        last_seen_at=now - timedelta(days=40),
    )
    cleo = Customer.objects.create(created_at=now - timedelta(days=300), first_name="Cleo")
    dan = Customer.objects.create(
        created_at=now - timedelta(days=300),
        first_name="Dan",
        city="Lyon",
        home_store=lyon,
        lifetime_orders=9,
        lifetime_revenue=Decimal("900.00"),
        last_purchase_at=now - timedelta(days=1),
        last_seen_at=now - timedelta(days=1),
        erased_at=now,
    )
    for customer, channel in [(ana, "web"), (ana, "pos"), (bob, "app"), (dan, "web")]:
        CustomerChannelStat.objects.create(
            customer=customer,
            channel=channels[channel],
            touchpoints=1,
            first_seen_at=now - timedelta(days=50),
            last_seen_at=now - timedelta(days=2),
        )
    long_ago = now - timedelta(days=200)
    for customer, channel, status in [
        (ana, "email", "opted_in"),
        (bob, "email", "opted_in"),
        (bob, "sms", "opted_in"),
    ]:
        consent_record(
            customer=customer,
            channel=channels[channel],
            status=status,
            source="form",
            occurred_at=long_ago,
        )
    consent_record(
        customer=bob,
        channel=channels["email"],
        status="opted_out",
        source="form",
        occurred_at=long_ago + timedelta(days=1),
    )
    for customer, channel, kind, days in [
        (ana, "web", "add_to_cart", 2),
        (bob, "app", "purchase", 40),
        (bob, "web", "add_to_cart", 20),
        (dan, "web", "add_to_cart", 1),
    ]:
        Touchpoint.objects.create(
            customer=customer,
            channel=channels[channel],
            kind=kind,
            occurred_at=now - timedelta(days=days),
            source="test",
            event_id=f"{customer.first_name}-{kind}-{days}",
            received_at=now,
        )
    return {"ana": ana, "bob": bob, "cleo": cleo, "dan": dan, "lyon": lyon}


def members(segment, now):
    return {c.first_name for c in segment_queryset(segment, now=now)}


def segment_with(*rules, match="all"):
    segment = Segment.objects.create(name=f"s-{Segment.objects.count()}", match=match)
    for fields in rules:
        SegmentRule.objects.create(segment=segment, **fields)
    return segment


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"kind": "channel_used", "channel": "web"}, {"Ana"}),
        ({"kind": "channel_used", "channel": "app"}, {"Bob"}),
        ({"kind": "channel_used", "channel": "sms"}, {"Bob"}),  # the consent touchpoints
        ({"kind": "channel_used", "channel": "social"}, set()),
        ({"kind": "purchased_within", "days": 30}, {"Ana"}),
        ({"kind": "purchased_within", "days": 41}, {"Ana", "Bob"}),
        ({"kind": "revenue_at_least", "amount": Decimal("100")}, {"Ana"}),
        ({"kind": "revenue_at_least", "amount": Decimal("40")}, {"Ana", "Bob"}),
        ({"kind": "revenue_at_least", "amount": Decimal("0")}, {"Ana", "Bob", "Cleo"}),
        ({"kind": "orders_at_least", "amount": Decimal("1")}, {"Ana", "Bob"}),
        ({"kind": "orders_at_least", "amount": Decimal("3")}, {"Ana"}),
        ({"kind": "home_store", "location": "lyon"}, {"Ana"}),
        ({"kind": "attribute", "attribute": "city", "value": "LYON"}, {"Ana", "Bob"}),
        ({"kind": "attribute", "attribute": "occupation", "value": "teacher"}, {"Ana"}),
        ({"kind": "attribute", "attribute": "gender", "value": "female"}, {"Ana"}),
        ({"kind": "attribute", "attribute": "age_range", "value": "35_44"}, {"Bob"}),
        ({"kind": "attribute", "attribute": "language", "value": "fr"}, {"Ana"}),
        ({"kind": "attribute", "attribute": "language", "value": "FR"}, set()),
        ({"kind": "consent", "channel": "email"}, {"Ana"}),
        ({"kind": "consent", "channel": "sms"}, {"Bob"}),
        ({"kind": "consent", "channel": "push"}, set()),
        ({"kind": "touchpoint_within", "touchpoint_kind": "add_to_cart", "days": 7}, {"Ana"}),
        (
            {"kind": "touchpoint_within", "touchpoint_kind": "add_to_cart", "days": 30},
            {"Ana", "Bob"},
        ),
        (
            {
                "kind": "touchpoint_within",
                "touchpoint_kind": "add_to_cart",
                "days": 30,
                "channel": "app",
            },
            set(),
        ),
        ({"kind": "touchpoint_within", "touchpoint_kind": "purchase", "days": 30}, set()),
        ({"kind": "touchpoint_within", "touchpoint_kind": "purchase", "days": 41}, {"Bob"}),
        ({"kind": "seen_within", "days": 7}, {"Ana"}),
        ({"kind": "seen_within", "days": 41}, {"Ana", "Bob"}),
    ],
)
def test_each_rule_kind(people, channels, now, rule, expected):
    fields = dict(rule)
    if "channel" in fields:
        fields["channel"] = channels[fields["channel"]]
    if "location" in fields:
        fields["location"] = people[fields["location"]]
    segment = segment_with(fields)
    assert rule_errors(segment.rules.get()) == {}

    assert members(segment, now) == expected

    SegmentRule.objects.filter(segment=segment).update(negate=True)
    assert members(segment, now) == {"Ana", "Bob", "Cleo"} - expected


def test_a_segment_without_rules_holds_everyone_but_the_erased(people, now):
    assert members(segment_with(), now) == {"Ana", "Bob", "Cleo"}


def test_match_all_and_match_any(people, channels, now):
    rules = (
        {"kind": "attribute", "attribute": "city", "value": "lyon"},
        {"kind": "consent", "channel": channels["sms"]},
        {"kind": "revenue_at_least", "amount": Decimal("100")},
    )
    assert members(segment_with(*rules, match="all"), now) == set()
    assert members(segment_with(*rules[:2], match="all"), now) == {"Bob"}
    assert members(segment_with(*rules[1:], match="any"), now) == {"Ana", "Bob"}
    negated = dict(rules[0], negate=True)
    assert members(segment_with(negated, rules[2], match="any"), now) == {"Ana", "Cleo"}
    assert members(segment_with(negated, rules[2], match="all"), now) == set()


def test_a_segment_counts_in_one_query(people, channels, now, django_assert_num_queries):
    segment = segment_with(
        {"kind": "channel_used", "channel": channels["web"]},
        {"kind": "purchased_within", "days": 30},
        {"kind": "consent", "channel": channels["email"]},
    )
    rules = list(segment.rules.all())
    with django_assert_num_queries(1):
        assert segment_queryset(segment, rules=rules, now=now).count() == 1


def test_segment_count_refresh_stores_counts(people, channels):
    everyone = segment_with()
    lyon = segment_with({"kind": "attribute", "attribute": "city", "value": "Lyon"})
    web = segment_with({"kind": "channel_used", "channel": channels["web"]})
    before = timezone.now()

    assert segment_count_refresh(segment_ids=[lyon.pk, web.pk]) == 2

    counts = dict(Segment.objects.values_list("pk", "member_count"))
    assert counts == {everyone.pk: None, lyon.pk: 2, web.pk: 1}
    lyon.refresh_from_db()
    assert lyon.counted_at >= before

    assert segment_count_refresh() == 3
    counts = dict(Segment.objects.values_list("pk", "member_count"))
    assert counts == {everyone.pk: 3, lyon.pk: 2, web.pk: 1}


# --- Rule validation --------------------------------------------------------------------------


def rule(**fields):
    return SegmentRule(segment=Segment(name="x"), **fields)


def test_rule_errors_for_missing_fields():
    assert rule_errors(rule(kind="channel_used")) == {
        "channel": ["Required for 'Has used channel'."]
    }
    assert rule_errors(rule(kind="attribute")) == {
        "attribute": ["Required for 'Persona attribute is'."],
        "value": ["Required for 'Persona attribute is'."],
    }
    assert rule_errors(rule(kind="touchpoint_within", days=3)) == {
        "touchpoint_kind": ["Required for 'Had a touchpoint of kind within the last N days'."]
    }
    assert rule_errors(rule(kind="revenue_at_least")) == {
        "amount": ["Required for 'Lifetime revenue at least'."]
    }
    assert rule_errors(rule(kind="")) == {"kind": ["Choose a kind of rule."]}
    assert rule_errors(rule(kind="favourite_colour")) == {"kind": ["Choose a kind of rule."]}


def test_rule_errors_for_extra_fields(channels):
    location = LocationFactory(code="lyon")
    assert rule_errors(
        rule(kind="seen_within", days=3, channel=channels["web"], location=location, value="x")
    ) == {
        "channel": ["Not used by 'Seen within the last N days'; leave it empty."],
        "location": ["Not used by 'Seen within the last N days'; leave it empty."],
        "value": ["Not used by 'Seen within the last N days'; leave it empty."],
    }
    assert (
        rule_errors(
            rule(
                kind="touchpoint_within", touchpoint_kind="search", days=3, channel=channels["web"]
            )
        )
        == {}
    )


def test_rule_errors_for_bad_values(channels):
    assert rule_errors(rule(kind="consent", channel=channels["web"])) == {
        "channel": ["Consent is per messaging channel (email, SMS, ...)."]
    }
    assert rule_errors(rule(kind="orders_at_least", amount=Decimal("2.5"))) == {
        "amount": ["A whole number of orders."]
    }
    assert rule_errors(rule(kind="revenue_at_least", amount=Decimal("-1"))) == {
        "amount": ["Not negative."]
    }
    assert rule_errors(rule(kind="attribute", attribute="first_name", value="Ana")) == {
        "attribute": ["One of: age_range, gender, city, occupation, language."]
    }
    assert rule_errors(rule(kind="touchpoint_within", touchpoint_kind="teleport", days=3)) == {
        "touchpoint_kind": ["Unknown touchpoint kind 'teleport'."]
    }


def test_rules_describe_themselves(channels):
    assert rule_description(rule(kind="channel_used", channel=channels["web"])) == "used web"
    assert rule_description(rule(kind="purchased_within", days=30, negate=True)) == (
        "not purchased within 30 days"
    )
    assert rule_description(rule(kind="orders_at_least", amount=Decimal("3"))) == (
        "lifetime orders ≥ 3"
    )
    assert rule_description(rule(kind="attribute", attribute="city", value="Lyon")) == (
        "city = Lyon"
    )
    assert rule_description(rule(kind="attribute", attribute="age_range", value="25_34")) == (
        "age range = 25_34"
    )
    # A rule not yet validated still describes itself (the admin shows it with its errors).
    assert rule_description(rule(kind="attribute", attribute="shoe_size", value="38")) == (
        "shoe_size = 38"
    )
    assert rule_description(
        rule(kind="touchpoint_within", touchpoint_kind="search", days=7, channel=channels["app"])
    ) == ("search within 7 days on app")
