"""Back-in-stock subscriptions: subscribe (once per open triple, whatever the timing), the rules
that refuse one, cancel, and the selectors that read them."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from campaigns.models import BackInStockSubscription
from campaigns.selectors import subscriptions, subscriptions_waiting
from campaigns.services.subscriptions import subscription_cancel, subscription_create
from customers.identifiers import Identifier
from customers.models import Customer, Identity
from customers.services import customer_erase
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.models import ChannelKind
from tests.factories import ChannelFactory, ListingFactory, VariantFactory


@pytest.fixture
def item(channels):
    """LINEN-M, listed on the web shop."""
    variant = VariantFactory(sku="LINEN-M", product__title="Linen Shirt")
    ListingFactory(variant=variant, channel=channels.web)
    return variant


def _rows():
    return list(
        BackInStockSubscription.objects.order_by("pk").values_list(
            "customer_id", "variant__sku", "channel__code", "source", "notified_at"
        )
    )


@pytest.mark.django_db
def test_subscribe_creates_an_open_subscription(channels, make_customer, item):
    customer = make_customer()
    before = datetime.now(UTC)

    subscription = subscription_create(
        customer=customer, variant=item, channel=channels.web, source="client:7"
    )

    assert subscription.created is True
    assert _rows() == [(customer.pk, "LINEN-M", "web", "client:7", None)]
    assert before <= subscription.created_at <= datetime.now(UTC)


@pytest.mark.django_db
def test_subscribing_again_returns_the_open_subscription(channels, make_customer, item):
    customer = make_customer()
    first = subscription_create(customer=customer, variant=item, channel=channels.web, source="a")

    again = subscription_create(customer=customer, variant=item, channel=channels.web, source="b")

    assert (again.pk, again.created, again.source) == (first.pk, False, "a")
    assert BackInStockSubscription.objects.count() == 1


@pytest.mark.django_db
def test_a_used_subscription_leaves_room_for_a_new_one(channels, make_customer, item):
    customer = make_customer()
    first = subscription_create(customer=customer, variant=item, channel=channels.web, source="a")
    used_at = datetime(2026, 3, 1, tzinfo=UTC)
    BackInStockSubscription.objects.filter(pk=first.pk).update(notified_at=used_at)

    second = subscription_create(customer=customer, variant=item, channel=channels.web, source="b")

    assert second.created is True and second.pk != first.pk
    assert _rows() == [
        (customer.pk, "LINEN-M", "web", "a", used_at),
        (customer.pk, "LINEN-M", "web", "b", None),
    ]


@pytest.mark.django_db
def test_each_channel_and_customer_has_its_own_subscription(channels, make_customer, item):
    app = ChannelFactory(code="app", name="App", kind=ChannelKind.APP)
    ListingFactory(variant=item, channel=app)
    ana, bob = make_customer(), make_customer()

    for customer, channel in [(ana, channels.web), (ana, app), (bob, channels.web)]:
        created = subscription_create(customer=customer, variant=item, channel=channel, source="t")
        assert created.created is True

    assert sorted((c, ch) for c, _, ch, _, _ in _rows()) == sorted(
        [(ana.pk, "web"), (ana.pk, "app"), (bob.pk, "web")]
    )


@pytest.mark.django_db
def test_identifiers_find_the_customer(channels, make_customer, item):
    ana = make_customer(email="ana@example.com")

    subscription = subscription_create(
        identifiers=[Identifier("email", "ana@example.com")],
        variant=item,
        channel=channels.web,
        source="store:paris-01",
    )

    assert subscription.customer_id == ana.pk
    assert Customer.objects.count() == 1


@pytest.mark.django_db
def test_identifiers_of_nobody_create_the_customer(channels, item):
    subscription = subscription_create(
        identifiers=[Identifier("phone", "+33612345678")],
        variant=item,
        channel=channels.web,
        source="store:paris-01",
    )

    identity = Identity.objects.get()
    assert (identity.kind, identity.value, identity.customer_id) == (
        "phone",
        "+33612345678",
        subscription.customer_id,
    )
    assert identity.source == "store:paris-01"


def _refused(error_class, code, **kwargs):
    with pytest.raises(error_class) as caught:
        subscription_create(**kwargs)
    assert caught.value.code == code
    assert BackInStockSubscription.objects.count() == 0
    return caught.value


@pytest.mark.django_db
def test_a_messaging_channel_is_refused(channels, make_customer, item):
    error = _refused(
        ValidationFailed,
        "not_a_sales_channel",
        customer=make_customer(),
        variant=item,
        channel=channels.email,
        source="t",
    )
    assert error.extra == {"channel": ["Choose a sales channel."]}


@pytest.mark.django_db
def test_an_inactive_channel_is_refused(channels, make_customer, item):
    channels.web.is_active = False
    channels.web.save()
    error = _refused(
        ValidationFailed,
        "channel_inactive",
        customer=make_customer(),
        variant=item,
        channel=channels.web,
        source="t",
    )
    assert error.extra == {"channel": ["web is not active."]}


@pytest.mark.django_db
def test_an_item_not_listed_on_the_channel_is_refused(channels, make_customer):
    unlisted = VariantFactory(sku="WOOL-S")
    error = _refused(
        ValidationFailed,
        "not_listed",
        customer=make_customer(),
        variant=unlisted,
        channel=channels.web,
        source="t",
    )
    assert error.extra == {"sku": ["WOOL-S is not listed on web."]}


@pytest.mark.django_db
def test_an_inactive_item_is_refused(channels, make_customer, item):
    item.is_active = False
    item.save()
    error = _refused(
        ValidationFailed,
        "variant_inactive",
        customer=make_customer(),
        variant=item,
        channel=channels.web,
        source="t",
    )
    assert error.extra == {"sku": ["LINEN-M is inactive."]}


@pytest.mark.django_db
def test_an_erased_customer_is_refused(channels, make_customer, item):
    customer = make_customer()
    customer_erase(customer=customer, source="test", reason="asked")

    error = _refused(
        Conflict,
        "customer_erased",
        customer=Customer.objects.get(pk=customer.pk),
        variant=item,
        channel=channels.web,
        source="t",
    )
    assert error.extra == {"customer": [f"Customer {customer.pk} was erased."]}


@pytest.mark.django_db
def test_nobody_named_is_refused(channels, item):
    error = _refused(
        ValidationFailed,
        "customer_required",
        variant=item,
        channel=channels.web,
        source="t",
        identifiers=[],
    )
    assert error.extra == {"customer": ["Give a customer id or identifiers."]}


@pytest.mark.django_db
@pytest.mark.parametrize("source", ["", "   ", "x" * 81])
def test_a_source_is_required(channels, make_customer, item, source):
    error = _refused(
        ValidationFailed,
        "validation_error",
        customer=make_customer(),
        variant=item,
        channel=channels.web,
        source=source,
    )
    assert error.extra == {"source": ["1 to 80 characters."]}


@pytest.mark.django_db
def test_a_refused_subscription_creates_no_customer(channels):
    unlisted = VariantFactory(sku="WOOL-S")
    with pytest.raises(ValidationFailed):
        subscription_create(
            identifiers=[Identifier("email", "new@example.com")],
            variant=unlisted,
            channel=channels.web,
            source="t",
        )
    assert (Customer.objects.count(), Identity.objects.count()) == (0, 0)


# --- Cancel -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_removes_the_open_subscription(channels, make_customer, item):
    subscription = subscription_create(
        customer=make_customer(), variant=item, channel=channels.web, source="t"
    )
    pk = subscription.pk

    cancelled = subscription_cancel(subscription=subscription)

    assert cancelled.pk == pk
    assert BackInStockSubscription.objects.count() == 0
    with pytest.raises(NotFound) as caught:
        subscription_cancel(subscription=subscription)
    assert caught.value.code == "not_found"


@pytest.mark.django_db
def test_a_used_subscription_cannot_be_cancelled(channels, make_customer, item):
    subscription = subscription_create(
        customer=make_customer(), variant=item, channel=channels.web, source="t"
    )
    BackInStockSubscription.objects.filter(pk=subscription.pk).update(
        notified_at=datetime(2026, 3, 1, tzinfo=UTC)
    )

    with pytest.raises(Conflict) as caught:
        subscription_cancel(subscription=subscription)

    assert caught.value.code == "subscription_used"
    assert BackInStockSubscription.objects.filter(pk=subscription.pk).exists()


# --- Selectors --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_waiting_subscriptions_by_variant_channel_and_customer(channels, make_customer, item):
    other = VariantFactory(sku="WOOL-S")
    ListingFactory(variant=other, channel=channels.web)
    ana, bob = make_customer(), make_customer()
    a1 = subscription_create(customer=ana, variant=item, channel=channels.web, source="t")
    a2 = subscription_create(customer=ana, variant=other, channel=channels.web, source="t")
    b1 = subscription_create(customer=bob, variant=item, channel=channels.web, source="t")
    BackInStockSubscription.objects.filter(pk=a2.pk).update(
        notified_at=datetime.now(UTC) - timedelta(days=1)
    )

    assert {s.pk for s in subscriptions_waiting()} == {a1.pk, b1.pk}
    assert {s.pk for s in subscriptions_waiting(variant_id=item.pk)} == {a1.pk, b1.pk}
    assert [s.pk for s in subscriptions_waiting(customer_id=ana.pk)] == [a1.pk]
    assert list(subscriptions_waiting(variant_id=other.pk)) == []
    assert list(subscriptions_waiting(channel_id=channels.pos.pk)) == []
    assert [s.pk for s in subscriptions()] == [b1.pk, a2.pk, a1.pk]


# --- Concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_subscriptions_make_one_row(channels, make_customer, item):
    """Two requests for the same customer, item and channel at the same moment, each in its
    own transaction and connection: the partial unique constraint keeps one open row and both
    get it back."""
    customer = make_customer()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def subscribe():
        try:
            barrier.wait(timeout=10)
            results.append(
                subscription_create(
                    customer=customer, variant=item, channel=channels.web, source="race"
                )
            )
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=subscribe) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(result.created for result in results) == [False, True]
    assert len({result.pk for result in results}) == 1
    assert _rows() == [(customer.pk, "LINEN-M", "web", "race", None)]


@pytest.mark.django_db(transaction=True)
def test_concurrent_subscriptions_by_identifiers_make_one_customer_and_one_row(channels, item):
    barrier = threading.Barrier(2)
    results, errors = [], []

    def subscribe():
        try:
            barrier.wait(timeout=10)
            results.append(
                subscription_create(
                    identifiers=[Identifier("email", "race@example.com")],
                    variant=item,
                    channel=channels.web,
                    source="race",
                )
            )
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=subscribe) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(result.created for result in results) == [False, True]
    customer = Customer.objects.get()
    assert _rows() == [(customer.pk, "LINEN-M", "web", "race", None)]
