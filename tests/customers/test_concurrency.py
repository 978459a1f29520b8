"""Resolution, ingest and merges under real concurrency: threads, each with its own connection
and its own transactions, against PostgreSQL.

Transactional tests flush every table (the seeded channels and identifier rules included), so
these create what they use; the identifier rules fall back to their defaults.
"""

import random
import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from customers.identifiers import Identifier
from customers.models import (
    ConsentState,
    Customer,
    CustomerChannelStat,
    CustomerMerge,
    Identity,
    Touchpoint,
)
from customers.services import (
    ResolveRequest,
    consent_record,
    customer_merge,
    customer_resolve,
    identities_resolve,
    touchpoints_ingest,
)
from customers.services.resolution import survivor_of
from tests.customers.conftest import at, keys_of

pytestmark = pytest.mark.django_db(transaction=True)


def run_threads(count, work, *, timeout=60):
    """Run ``work(index)`` in ``count`` threads released together by a barrier; each thread
    closes its own connection at the end. Returns the exceptions that escaped, by thread."""
    barrier = threading.Barrier(count)
    errors = {}

    def run(index):
        try:
            barrier.wait(timeout=timeout)
            work(index)
        except BaseException as exc:
            errors[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,), name=f"worker-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return errors


def I(kind, value):  # noqa: E743 - reads like the identifier it builds
    return Identifier(kind, value)


def assert_every_identity_on_a_live_customer():
    orphans = Identity.objects.exclude(customer__in=Customer.objects.all())
    assert not orphans.exists()


def test_identities_resolve_needs_a_transaction():
    with pytest.raises(RuntimeError, match="^identities_resolve must run inside a transaction$"):
        identities_resolve(
            requests=[ResolveRequest([I("email", "a@example.com")])], source="t", seen_at=at()
        )


def test_overlapping_new_identifiers_end_as_one_customer():
    rounds = 8
    for r in range(rounds):
        a, p, c = (
            I("email", f"a{r}@example.com"),
            I("phone", f"+3361234{r:04d}"),
            I("loyalty_card", f"C{r}"),
        )
        sets = [[a, p], [p, c], [c, a], [a, p, c], [c], [p, a]]
        found = {}

        def work(index, sets=sets, found=found):
            customer, _ = customer_resolve(identifiers=sets[index], source=f"t{index}")
            found[index] = customer.pk

        assert run_threads(len(sets), work) == {}

        customer = Customer.objects.get(identities__value=a.value)
        assert keys_of(customer) == {a.key, p.key, c.key}
        assert Identity.objects.filter(value__in=[a.value, p.value, c.value]).count() == 3
        # Each request got a customer that is, or was merged into, the one at the end.
        assert {survivor_of(pk) for pk in found.values()} == {customer.pk}
    assert Customer.objects.count() == rounds
    assert_every_identity_on_a_live_customer()


def test_overlapping_identifiers_of_existing_customers_merge_into_the_oldest(make_customer):
    for r in range(5):
        a = make_customer(("email", f"a{r}@example.com"), created_at=at(-10 - r))
        p = make_customer(("phone", f"+3361234{r:04d}"), created_at=at(-50 - r))
        c = make_customer(("loyalty_card", f"C{r}"), created_at=at(-30 - r))
        keys = [
            ("email", f"a{r}@example.com"),
            ("phone", f"+3361234{r:04d}"),
            ("loyalty_card", f"C{r}"),
        ]
        sets = [[keys[0], keys[1]], [keys[1], keys[2]], [keys[2], keys[0]]]

        def work(index, sets=sets):
            customer_resolve(identifiers=[I(*k) for k in sets[index]], source=f"t{index}")

        assert run_threads(len(sets), work) == {}

        survivor = Customer.objects.get(pk=p.pk)
        assert keys_of(survivor) == set(keys)
        assert not Customer.objects.filter(pk__in=[a.pk, c.pk]).exists()
        assert sorted(
            CustomerMerge.objects.filter(survivor=survivor).values_list(
                "merged_customer_id", flat=True
            )
        ) == sorted([a.pk, c.pk])
    assert Customer.objects.count() == 5
    assert CustomerMerge.objects.count() == 10


def test_many_threads_creating_the_same_new_email_make_one_customer():
    found = {}

    def work(index):
        customer, resolution = customer_resolve(
            identifiers=[I("email", "new@example.com")], source=f"t{index}"
        )
        found[index] = (customer.pk, bool(resolution.created))

    assert run_threads(16, work) == {}

    customer = Customer.objects.get()
    assert {pk for pk, _ in found.values()} == {customer.pk}
    assert sum(created for _, created in found.values()) == 1
    assert Identity.objects.get().customer_id == customer.pk


def test_random_overlapping_requests_end_as_the_connected_components():
    universe = (
        [I("email", f"u{n}@example.com") for n in range(4)]
        + [I("phone", f"+3361111{n:04d}") for n in range(3)]
        + [I("loyalty_card", f"L{n}") for n in range(3)]
    )
    plans = {
        index: [
            random.Random(index * 100 + n).sample(universe, random.Random(n).randint(1, 2))
            for n in range(4)
        ]
        for index in range(12)
    }

    def work(index):
        for identifiers in plans[index]:
            customer_resolve(identifiers=identifiers, source=f"t{index}")

    assert run_threads(12, work) == {}

    # Expected: the identifiers used together, transitively, are one customer.
    parent = {i.key: i.key for i in universe}

    def find(key):
        while parent[key] != key:
            key = parent[key]
        return key

    for requests in plans.values():
        for identifiers in requests:
            for other in identifiers[1:]:
                parent[find(other.key)] = find(identifiers[0].key)
    used = {i.key for requests in plans.values() for identifiers in requests for i in identifiers}
    expected = {}
    for key in used:
        expected.setdefault(find(key), set()).add(key)
    actual = [keys_of(c) for c in Customer.objects.all()]
    assert sorted(map(sorted, actual)) == sorted(map(sorted, expected.values()))
    assert_every_identity_on_a_live_customer()


def _batch(prefix, emails, purchases_each=2):
    events = []
    for n, email in enumerate(emails):
        for k in range(purchases_each):
            events.append(
                {
                    "event_id": f"{prefix}-{n}-{k}",
                    "kind": "purchase",
                    "channel": "web",
                    "occurred_at": at(-k).isoformat(),
                    "identifiers": [{"kind": "email", "value": email}],
                    "properties": {"amount": "10.00"},
                }
            )
        events.append(
            {
                "event_id": f"{prefix}-{n}-view",
                "kind": "product_view",
                "channel": "app",
                "occurred_at": at(-3).isoformat(),
                "identifiers": [
                    {"kind": "email", "value": email},
                    {"kind": "web_cookie", "value": f"ck{n}"},
                ],
            }
        )
    return events


def test_concurrent_replays_of_a_batch_record_it_once(channels):
    emails = [f"buyer{n}@example.com" for n in range(5)]
    events = _batch("b", emails)
    results = {}

    def work(index):
        results[index] = touchpoints_ingest(source="client:1", events=events)

    assert run_threads(8, work) == {}

    assert Touchpoint.objects.count() == 15
    assert sum(r.created for r in results.values()) == 15
    assert sum(r.duplicates for r in results.values()) == 15 * 7
    assert sum(r.new_customers for r in results.values()) == 5
    assert Customer.objects.count() == 5
    for customer in Customer.objects.all():
        assert (customer.lifetime_orders, customer.lifetime_revenue) == (2, Decimal("20.00"))
        assert dict(
            CustomerChannelStat.objects.filter(customer=customer).values_list(
                "channel__code", "touchpoints"
            )
        ) == {"web": 2, "app": 1}


def test_concurrent_replays_naming_the_customer_record_it_once(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"), created_at=at(-60))
    events = [
        {
            "event_id": f"o-{n}",
            "kind": "purchase",
            "channel": "pos",
            "occurred_at": at(-n).isoformat(),
            "customer": ana.pk,
            "properties": {"amount": "5.00"},
        }
        for n in range(10)
    ]
    results = {}

    def work(index):
        results[index] = touchpoints_ingest(source="client:1", events=events)

    assert run_threads(8, work) == {}

    assert Touchpoint.objects.filter(customer=ana).count() == 10
    assert sum(r.created for r in results.values()) == 10
    ana.refresh_from_db()
    assert (ana.lifetime_orders, ana.lifetime_revenue) == (10, Decimal("50.00"))
    assert CustomerChannelStat.objects.get(customer=ana).touchpoints == 10


def test_overlapping_batches_sharing_events_count_each_event_once(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"), created_at=at(-60))

    def events_for(index):
        # Each batch holds events 0..9 shifted by the thread: neighbours share most of them.
        return [
            {
                "event_id": f"o-{n}",
                "kind": "purchase",
                "channel": "pos",
                "occurred_at": at(-n).isoformat(),
                "customer": ana.pk,
                "properties": {"amount": "1.00"},
            }
            for n in range(index, index + 10)
        ]

    assert (
        run_threads(6, lambda index: touchpoints_ingest(source="c", events=events_for(index))) == {}
    )

    ana.refresh_from_db()
    assert Touchpoint.objects.count() == 15
    assert (ana.lifetime_orders, ana.lifetime_revenue) == (15, Decimal("15.00"))
    assert CustomerChannelStat.objects.get(customer=ana).touchpoints == 15


def test_a_staff_merge_racing_an_ingest_loses_nothing(channels, make_customer):
    for r in range(4):
        old = make_customer(("email", f"old{r}@example.com"), created_at=at(-90))
        young = make_customer(("phone", f"+3362222{r:04d}"), created_at=at(-10))
        identifiers = [
            [{"kind": "email", "value": f"old{r}@example.com"}],
            [{"kind": "phone", "value": f"+3362222{r:04d}"}],
        ]

        def work(index, r=r, old=old, young=young, identifiers=identifiers):
            if index == 0:
                customer_merge(customers=[young, old], reason="Same person")
                return
            touchpoints_ingest(
                source=f"client:{index}",
                events=[
                    {
                        "event_id": f"r{r}-{n}",
                        "kind": "purchase",
                        "channel": "pos",
                        "occurred_at": at(-n).isoformat(),
                        "identifiers": identifiers[(index + n) % 2],
                        "properties": {"amount": "2.50"},
                    }
                    for n in range(6)
                ],
            )

        assert run_threads(5, work) == {}

        survivor = Customer.objects.get(pk=old.pk)
        assert not Customer.objects.filter(pk=young.pk).exists()
        assert keys_of(survivor) == {
            ("email", f"old{r}@example.com"),
            ("phone", f"+3362222{r:04d}"),
        }
        assert Touchpoint.objects.filter(customer=survivor).count() == 24
        assert (survivor.lifetime_orders, survivor.lifetime_revenue) == (24, Decimal("60.00"))
        assert CustomerChannelStat.objects.get(customer=survivor).touchpoints == 24
        assert CustomerMerge.objects.get(merged_customer_id=young.pk).survivor_id == old.pk
    assert Customer.objects.count() == 4
    assert Touchpoint.objects.count() == 96


def test_concurrent_consents_keep_the_latest_decision(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"), created_at=at(-60))
    moments = [at(-n) for n in range(12)]
    random.Random(7).shuffle(moments)

    def work(index):
        consent_record(
            customer=ana,
            channel=channels["email"],
            status="opted_in" if index % 2 else "opted_out",
            source="form",
            occurred_at=moments[index],
        )

    assert run_threads(12, work) == {}

    latest = moments.index(at(0))
    state = ConsentState.objects.get(customer=ana)
    assert (state.status, state.occurred_at) == (
        "opted_in" if latest % 2 else "opted_out",
        at(0),
    )
    assert Counter(ana.consents.values_list("status", flat=True)) == {
        "opted_in": 6,
        "opted_out": 6,
    }
