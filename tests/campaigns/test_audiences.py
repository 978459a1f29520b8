"""The retargeting audience export: exact hashes of normalised identifiers, only consented and
not erased customers, segments and abandoned carts, streamed in batches."""

import secrets
from datetime import timedelta
from decimal import Decimal
from types import GeneratorType

import pytest
from django.utils import timezone

from campaigns.services import audiences
from campaigns.services.audiences import audience_csv
from customers.models import Customer, Segment, SegmentAttribute, SegmentRule, SegmentRuleKind
from customers.services import customer_erase
from omni.exceptions import ValidationFailed
from omni.models import ChannelKind
from orders.models import Cart, CartLine, CartStatus
from tests.factories import ChannelFactory, VariantFactory

pytestmark = pytest.mark.django_db

HEADER = "email_sha256,phone_sha256\n"
# SHA-256 of the normalised values, computed independently (sha256sum).
ANA = "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11"  # ana@example.com
ANA_PHONE = "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8"  # +33612345678
BOB = "5ff860bf1190596c7188ab851db691f0f3169c453936e9e1eba2f9a47f7a0018"  # bob@example.com
BOB_PHONE = "5d95927065eaad98853886917e3ac06e89d403e57f62ed371007505678ffa90f"  # +33698765432
CARLA = "997661eecb574111f6dba41985ff89694db2f8213e37ef8a2160159f7b05bb61"  # carla@example.com


@pytest.fixture
def ads(channels):
    return ChannelFactory(
        code="ads-audience", name="Ads audiences", kind=ChannelKind.ADS_AUDIENCE, currency=""
    )


@pytest.fixture
def everyone(db):
    """A segment without rules: every customer not erased."""
    return Segment.objects.create(name="Everyone")


def _csv(**kwargs) -> str:
    return "".join(audience_csv(**kwargs))


def test_hashes_of_normalised_email_and_phone(ads, make_customer, everyone):
    # The fixture stores identifiers as given: the export trims and lower-cases emails itself;
    # phones are hashed in E.164 as identities hold them.
    make_customer(email="  Ana@Example.COM ", phone="+33612345678", opt_in=("ads-audience",))

    assert _csv(segment=everyone) == f"{HEADER}{ANA},{ANA_PHONE}\n"


def test_a_missing_identifier_leaves_its_cell_empty(ads, make_customer, everyone):
    make_customer(email="bob@example.com", opt_in=("ads-audience",))
    make_customer(email=None, phone="+33698765432", opt_in=("ads-audience",))
    make_customer(email=None, phone=None, opt_in=("ads-audience",))  # a loyalty card only

    assert _csv(segment=everyone) == f"{HEADER}{BOB},\n,{BOB_PHONE}\n"


def test_only_customers_opted_in_on_the_ads_channel(ads, make_customer, everyone):
    make_customer(email="ana@example.com", opt_in=("ads-audience", "email"))
    make_customer(email="bob@example.com", opt_in=("email", "sms"))  # no say on ads
    make_customer(email="carla@example.com", opt_in=("ads-audience",), opt_out=("ads-audience",))

    assert _csv(segment=everyone) == f"{HEADER}{ANA},\n"


def test_erased_customers_are_left_out(ads, make_customer, everyone):
    ana = make_customer(email="ana@example.com", opt_in=("ads-audience",))
    make_customer(email="carla@example.com", opt_in=("ads-audience",))
    customer_erase(customer=ana, source="test", reason="asked")

    assert _csv(segment=everyone) == f"{HEADER}{CARLA},\n"


def test_an_inactive_ads_channel_exports_nobody(ads, make_customer, everyone):
    make_customer(email="ana@example.com", opt_in=("ads-audience",))
    ads.is_active = False
    ads.save()

    assert _csv(segment=everyone) == HEADER


def test_a_segment_exports_its_members_only(ads, make_customer):
    paris = Segment.objects.create(name="Paris")
    SegmentRule.objects.create(
        segment=paris,
        kind=SegmentRuleKind.ATTRIBUTE,
        attribute=SegmentAttribute.CITY,
        value="Paris",
    )
    ana = make_customer(email="ana@example.com", opt_in=("ads-audience",))
    make_customer(email="bob@example.com", opt_in=("ads-audience",))
    Customer.objects.filter(pk=ana.pk).update(city="Paris")

    assert _csv(segment=paris) == f"{HEADER}{ANA},\n"


# --- Abandoned carts --------------------------------------------------------------------------


@pytest.fixture
def make_cart(channels):
    variant = VariantFactory(sku="LINEN-M")

    def _make(customer, *, idle_minutes, status=CartStatus.OPEN, lines=1):
        now = timezone.now()
        cart = Cart.objects.create(
            token=secrets.token_hex(16),
            channel=channels.web,
            customer=customer,
            status=status,
            currency="EUR",
            created_at=now - timedelta(minutes=idle_minutes),
            last_activity_at=now - timedelta(minutes=idle_minutes),
            closed_at=None if status == CartStatus.OPEN else now,
        )
        if lines:
            CartLine.objects.create(
                cart=cart,
                variant=variant,
                quantity=lines,
                unit_price=Decimal("19.99"),
                added_at=cart.created_at,
                updated_at=cart.created_at,
            )
        return cart

    return _make


def test_abandoned_cart_audience(ads, make_customer, make_cart):
    ana = make_customer(email="ana@example.com", opt_in=("ads-audience",))
    bob = make_customer(email="bob@example.com", opt_in=("ads-audience",))
    carla = make_customer(email="carla@example.com", opt_in=("ads-audience",))
    dan = make_customer(email="dan@example.com", opt_in=("ads-audience",))
    eve = make_customer(email="eve@example.com", opt_in=("email",))
    make_cart(ana, idle_minutes=90)  # abandoned
    make_cart(bob, idle_minutes=30)  # still shopping
    make_cart(carla, idle_minutes=90, status=CartStatus.CONVERTED)  # bought
    make_cart(dan, idle_minutes=90, lines=0)  # nothing in it
    make_cart(eve, idle_minutes=90)  # no say on ads

    assert _csv(abandoned_carts=True) == f"{HEADER}{ANA},\n"
    assert _csv(abandoned_carts=True, min_idle_minutes=20) == f"{HEADER}{ANA},\n{BOB},\n"


def test_a_customer_with_two_abandoned_carts_is_one_row(ads, make_customer, make_cart, channels):
    ana = make_customer(email="ana@example.com", opt_in=("ads-audience",))
    make_cart(ana, idle_minutes=90)
    make_cart(ana, idle_minutes=300)

    assert _csv(abandoned_carts=True, min_idle_minutes=60) == f"{HEADER}{ANA},\n"


# --- The request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Give a segment or abandoned carts."),
        (
            {"abandoned_carts": True, "segment": "everyone"},
            "Give a segment or abandoned carts, not both.",
        ),
    ],
)
def test_a_segment_or_abandoned_carts_is_required(everyone, kwargs, message):
    if kwargs.get("segment") == "everyone":
        kwargs["segment"] = everyone
    # Refused at the call, before anything is streamed.
    with pytest.raises(ValidationFailed) as caught:
        audience_csv(**kwargs)

    assert caught.value.code == "audience_choice"
    assert caught.value.extra == {"non_field_errors": [message]}


@pytest.mark.parametrize("minutes", [-1, 60 * 24 * 365 + 1, "60", 1.5, True])
def test_the_idle_time_is_checked(minutes):
    with pytest.raises(ValidationFailed) as caught:
        audience_csv(abandoned_carts=True, min_idle_minutes=minutes)

    assert caught.value.code == "validation_error"
    assert list(caught.value.extra) == ["min_idle_minutes"]


def test_rows_stream_in_batches_in_customer_order(
    ads, make_customer, everyone, monkeypatch, django_assert_num_queries
):
    monkeypatch.setattr(audiences, "CHUNK_SIZE", 2)
    emails = [f"c{n}@example.com" for n in range(5)]
    for email in emails:
        make_customer(email=email, opt_in=("ads-audience",))

    lines = audience_csv(segment=everyone)
    assert isinstance(lines, GeneratorType)
    with django_assert_num_queries(1):  # one statement, fetched from a cursor in batches
        rows = list(lines)

    assert rows[0] == HEADER
    assert rows[1:] == [f"{audiences.sha256_hex(email)},\n" for email in emails]
    assert audiences.sha256_hex("ana@example.com") == ANA
