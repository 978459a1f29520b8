"""Identity resolution: create, attach, merge; never-merge kinds, blocked values, explicit ids,
and a batch resolved in one pass giving what resolving its requests one by one gives."""

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.identifiers import Identifier
from customers.models import (
    BlockedIdentifier,
    Customer,
    CustomerMerge,
    Identity,
    IdentityKindRule,
    PreferenceSource,
)
from customers.selectors import customers_matching
from customers.services import (
    ResolveRequest,
    blocked_identifier_add,
    customer_create,
    customer_erase,
    customer_merge,
    customer_resolve,
    customer_update,
    drop_blocked,
    identities_resolve,
    identity_add,
    identity_remove,
)
from customers.services import resolution as resolution_module
from customers.services.common import merge_kinds
from customers.services.resolution import survivor_of
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.models import OutboxEvent
from tests.customers.conftest import at, iso, keys_of
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db

EMAIL = ("email", "ana@example.com")
PHONE = ("phone", "+33612345678")
CARD = ("loyalty_card", "AB1234")
COOKIE = ("web_cookie", "ck-1")
DEVICE = ("app_device", "dev-1")


def I(key, verified=False):  # noqa: E743 - reads like the identifier it builds
    return Identifier(key[0], key[1], verified)


def resolve(*keys, **kwargs):
    kwargs.setdefault("source", "test")
    kwargs.setdefault("seen_at", at())
    return customer_resolve(identifiers=[I(k) for k in keys], **kwargs)


# --- None known, one known, several known ----------------------------------------------------


def test_unknown_identifiers_create_a_customer():
    customer, resolution = resolve(EMAIL, PHONE, source="client:7", seen_at=at(hours=2))

    assert Customer.objects.count() == 1
    assert customer.created_at == at(hours=2)
    assert customer.first_seen_at == at(hours=2)
    assert customer.last_seen_at == at(hours=2)
    assert resolution.customer_ids == [customer.pk]
    assert resolution.created == {customer.pk}
    assert resolution.merges == []
    assert resolution.attached == 2
    rows = Identity.objects.filter(customer=customer).values_list(
        "kind", "value", "verified", "source", "first_seen_at"
    )
    assert sorted(rows) == [
        ("email", "ana@example.com", False, "client:7", at(hours=2)),
        ("phone", "+33612345678", False, "client:7", at(hours=2)),
    ]
    assert CustomerMerge.objects.count() == 0


def test_one_known_identifier_attaches_the_new_ones(make_customer):
    ana = make_customer(EMAIL, created_at=at(-30))

    customer, resolution = resolve(EMAIL, PHONE, CARD, source="pos:1")

    assert customer.pk == ana.pk
    assert resolution.created == set()
    assert resolution.merges == []
    assert resolution.attached == 2
    assert keys_of(ana) == {EMAIL, PHONE, CARD}
    assert Identity.objects.get(kind="phone").source == "pos:1"
    assert Customer.objects.count() == 1


def test_all_known_identifiers_change_nothing(make_customer):
    ana = make_customer(EMAIL, PHONE, created_at=at(-30))

    customer, resolution = resolve(PHONE, EMAIL)

    assert customer.pk == ana.pk
    assert (resolution.created, resolution.merges, resolution.attached) == (set(), [], 0)
    assert Identity.objects.count() == 2


def test_several_customers_merge_into_the_oldest_by_creation_time(make_customer):
    # Created later in the table but earlier in life: the survivor is the oldest profile.
    young = make_customer(EMAIL, created_at=at(-1))
    old = make_customer(PHONE, created_at=at(-90))
    middle = make_customer(CARD, created_at=at(-20))

    customer, resolution = resolve(EMAIL, PHONE, CARD, source="client:3")

    assert customer.pk == old.pk
    assert Customer.objects.get().pk == old.pk
    assert keys_of(old) == {EMAIL, PHONE, CARD}
    assert resolution.attached == 0
    assert [m.merged_customer_id for m in resolution.merges] == [middle.pk, young.pk]
    audits = CustomerMerge.objects.order_by("id")
    assert [(a.survivor_id, a.merged_customer_id) for a in audits] == [
        (old.pk, middle.pk),
        (old.pk, young.pk),
    ]
    assert {(a.reason, a.source, a.actor_id) for a in audits} == {
        ("Shared identifier", "client:3", None)
    }
    assert OutboxEvent.objects.filter(type="customer.merged").count() == 2


def test_equal_creation_times_keep_the_lowest_id(make_customer):
    first = make_customer(EMAIL, created_at=at(-5))
    second = make_customer(PHONE, created_at=at(-5))

    customer, _ = resolve(PHONE, EMAIL)

    assert customer.pk == first.pk
    assert CustomerMerge.objects.get().merged_customer_id == second.pk


def test_a_new_identifier_joins_the_survivor_of_a_merge(make_customer):
    a = make_customer(EMAIL, created_at=at(-10))
    b = make_customer(PHONE, created_at=at(-5))

    customer, resolution = resolve(PHONE, CARD, EMAIL)

    assert customer.pk == a.pk
    assert [m.merged_customer_id for m in resolution.merges] == [b.pk]
    assert keys_of(a) == {EMAIL, PHONE, CARD}
    assert resolution.attached == 1


# --- Verified flags ---------------------------------------------------------------------------


def test_verified_identifiers_are_stored_and_mark_known_ones(make_customer):
    ana = make_customer(EMAIL, PHONE, created_at=at(-30))
    Identity.objects.filter(kind="phone").update(verified=True)

    customer_resolve(
        identifiers=[I(EMAIL, verified=True), I(PHONE, verified=False), I(CARD, verified=True)],
        source="test",
    )

    assert dict(Identity.objects.filter(customer=ana).values_list("kind", "verified")) == {
        "email": True,
        "phone": True,
        "loyalty_card": True,
    }


def test_a_batch_verifies_an_identifier_it_created_unverified():
    with transaction.atomic():
        resolution = identities_resolve(
            requests=[
                ResolveRequest([I(EMAIL)]),
                ResolveRequest([I(EMAIL, verified=True), I(PHONE)]),
            ],
            source="test",
            seen_at=at(),
        )
    assert len(set(resolution.customer_ids)) == 1
    assert dict(Identity.objects.values_list("kind", "verified")) == {
        "email": True,
        "phone": False,
    }
    assert resolution.attached == 2


# --- Never-merge kinds ------------------------------------------------------------------------


def test_default_rules_let_cookies_and_devices_never_merge():
    assert merge_kinds() == {"email", "phone", "loyalty_card", "pos_customer_id", "social_handle"}
    assert dict(IdentityKindRule.objects.values_list("kind", "may_merge")) == {
        "app_device": False,
        "email": True,
        "loyalty_card": True,
        "phone": True,
        "pos_customer_id": True,
        "social_handle": True,
        "web_cookie": False,
    }


def test_without_rule_rows_the_defaults_apply():
    IdentityKindRule.objects.all().delete()
    assert merge_kinds() == {"email", "phone", "loyalty_card", "pos_customer_id", "social_handle"}
    IdentityKindRule.objects.create(kind="email", may_merge=False)
    assert merge_kinds() == {"phone", "loyalty_card", "pos_customer_id", "social_handle"}


@pytest.mark.parametrize("weak", [COOKIE, DEVICE])
def test_a_shared_cookie_or_device_never_merges_two_customers(make_customer, weak):
    household = make_customer(weak, created_at=at(-40))
    ana = make_customer(EMAIL, created_at=at(-10))

    customer, resolution = resolve(weak, EMAIL)

    assert customer.pk == ana.pk
    assert resolution.merges == []
    assert Customer.objects.count() == 2
    assert keys_of(household) == {weak}
    assert keys_of(ana) == {EMAIL}


@pytest.mark.parametrize("weak", [COOKIE, DEVICE])
def test_a_cookie_finds_its_customer_when_nothing_else_does(make_customer, weak):
    household = make_customer(weak, created_at=at(-40))

    customer, resolution = resolve(weak, EMAIL)

    assert customer.pk == household.pk
    assert resolution.created == set()
    assert keys_of(household) == {weak, EMAIL}


def test_a_new_cookie_joins_the_customer_a_strong_identifier_finds(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))

    customer, _ = resolve(COOKIE, EMAIL)

    assert customer.pk == ana.pk
    assert keys_of(ana) == {EMAIL, COOKIE}


def test_two_known_cookies_find_the_first_one_s_customer(make_customer):
    first = make_customer(COOKIE, created_at=at(-1))
    other = ("web_cookie", "ck-2")
    second = make_customer(other, created_at=at(-50))

    customer, resolution = resolve(COOKIE, other)

    assert customer.pk == first.pk
    assert resolution.merges == []
    assert keys_of(second) == {other}


def test_staff_can_let_cookies_merge(make_customer):
    IdentityKindRule.objects.filter(kind="web_cookie").update(may_merge=True)
    household = make_customer(COOKIE, created_at=at(-40))
    ana = make_customer(EMAIL, created_at=at(-10))

    customer, resolution = resolve(COOKIE, EMAIL)

    assert customer.pk == household.pk
    assert [m.merged_customer_id for m in resolution.merges] == [ana.pk]
    assert keys_of(household) == {COOKIE, EMAIL}


def test_staff_can_stop_emails_from_merging(make_customer):
    IdentityKindRule.objects.filter(kind="email").update(may_merge=False)
    shared_inbox = make_customer(EMAIL, created_at=at(-40))
    ana = make_customer(PHONE, created_at=at(-10))

    customer, resolution = resolve(EMAIL, PHONE)
    assert customer.pk == ana.pk
    assert resolution.merges == []
    assert Customer.objects.count() == 2

    # Alone, the email still finds its customer.
    found, _ = resolve(EMAIL, CARD)
    assert found.pk == shared_inbox.pk
    assert keys_of(shared_inbox) == {EMAIL, CARD}

    # Switched back on, the same request merges them.
    IdentityKindRule.objects.filter(kind="email").update(may_merge=True)
    merged, resolution = resolve(EMAIL, PHONE)
    assert merged.pk == shared_inbox.pk
    assert [m.merged_customer_id for m in resolution.merges] == [ana.pk]
    assert Customer.objects.count() == 1


# --- Blocked values ---------------------------------------------------------------------------


def test_blocked_values_are_dropped_before_resolution(make_customer):
    store_email = ("email", "shop@example.com")
    BlockedIdentifier.objects.create(kind="email", value="shop@example.com", reason="Store")
    ana = make_customer(PHONE, created_at=at(-10))

    customer, resolution = resolve(store_email, PHONE)

    assert customer.pk == ana.pk
    assert resolution.attached == 0
    assert keys_of(ana) == {PHONE}
    assert not Identity.objects.filter(value="shop@example.com").exists()


def test_only_blocked_values_are_refused_and_change_nothing():
    BlockedIdentifier.objects.create(kind="email", value="shop@example.com")
    BlockedIdentifier.objects.create(kind="phone", value="+33612345678")

    with pytest.raises(ValidationFailed) as error:
        resolve(("email", "shop@example.com"), PHONE)

    assert error.value.code == "identifiers_blocked"
    assert error.value.extra == {"identifiers": ["Every identifier given is blocked."]}
    assert Customer.objects.count() == 0
    assert Identity.objects.count() == 0


def test_a_blocked_value_of_another_kind_is_not_blocked():
    BlockedIdentifier.objects.create(kind="pos_customer_id", value="1234")
    customer, _ = resolve(("loyalty_card", "1234"))
    assert keys_of(customer) == {("loyalty_card", "1234")}


def test_drop_blocked_reports_requests_left_with_nothing():
    BlockedIdentifier.objects.create(kind="email", value="shop@example.com")
    shop = I(("email", "shop@example.com"))
    requests = [
        ResolveRequest([shop, I(PHONE)]),
        ResolveRequest([shop]),
        ResolveRequest([shop], customer_id=42),
        ResolveRequest([I(CARD)]),
    ]

    kept, empty = drop_blocked(requests)

    assert [(r.identifiers, r.customer_id) for r in kept] == [
        ([I(PHONE)], None),
        ([], None),
        ([], 42),
        ([I(CARD)], None),
    ]
    assert empty == [1]


def test_drop_blocked_without_blocked_values_keeps_the_requests():
    requests = [ResolveRequest([I(EMAIL)]), ResolveRequest([])]
    kept, empty = drop_blocked(requests)
    assert kept is requests
    assert empty == [1]


def test_blocking_a_value_normalises_it_and_removes_the_identities(make_customer):
    ana = make_customer(PHONE, EMAIL, created_at=at(-10))

    blocked = blocked_identifier_add(kind="phone", value="06 12 34 56 78", reason="Demo number")

    assert (blocked.kind, blocked.value, blocked.reason) == ("phone", "+33612345678", "Demo number")
    assert keys_of(ana) == {EMAIL}
    again = blocked_identifier_add(kind="phone", value="+33 6 12 34 56 78")
    assert again.pk == blocked.pk
    assert BlockedIdentifier.objects.count() == 1
    # From now on the number identifies no one.
    customer, _ = resolve(PHONE, ("loyalty_card", "X1"))
    assert customer.pk != ana.pk
    assert keys_of(customer) == {("loyalty_card", "X1")}


def test_blocking_an_invalid_value_is_refused():
    with pytest.raises(ValidationFailed) as error:
        blocked_identifier_add(kind="phone", value="0612")
    assert error.value.code == "validation_error"
    assert error.value.extra == {"value": ["'0612' is not a valid phone number."]}
    assert BlockedIdentifier.objects.count() == 0


# --- Explicit customer ids --------------------------------------------------------------------


def test_an_explicit_customer_gets_the_new_identifiers(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))

    customer, resolution = resolve(PHONE, customer_id=ana.pk)

    assert customer.pk == ana.pk
    assert resolution.attached == 1
    assert keys_of(ana) == {EMAIL, PHONE}


def test_an_explicit_customer_alone_is_enough(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))
    customer, resolution = customer_resolve(identifiers=[], customer_id=ana.pk, source="test")
    assert customer.pk == ana.pk
    assert (resolution.created, resolution.attached) == (set(), 0)


def test_an_explicit_customer_merges_with_the_owner_of_an_identifier(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))
    other = make_customer(PHONE, created_at=at(-50))

    customer, resolution = resolve(PHONE, customer_id=ana.pk)

    assert customer.pk == other.pk
    assert [m.merged_customer_id for m in resolution.merges] == [ana.pk]


def test_a_merged_customer_id_is_followed_to_the_survivor(make_customer):
    old = make_customer(EMAIL, created_at=at(-50))
    young = make_customer(PHONE, created_at=at(-10))
    customer_merge(customers=[old, young])
    assert survivor_of(young.pk) == old.pk
    assert survivor_of(old.pk) == old.pk

    customer, _ = resolve(CARD, customer_id=young.pk)

    assert customer.pk == old.pk
    assert keys_of(old) == {EMAIL, PHONE, CARD}


def test_a_chain_of_merges_is_followed(make_customer):
    a = make_customer(EMAIL, created_at=at(-50))
    b = make_customer(PHONE, created_at=at(-30))
    c = make_customer(CARD, created_at=at(-10))
    customer_merge(customers=[b, c])
    customer_merge(customers=[a, b])

    assert survivor_of(c.pk) == a.pk
    customer, _ = customer_resolve(identifiers=[], customer_id=c.pk, source="test")
    assert customer.pk == a.pk


def test_an_unknown_customer_id_is_not_found(make_customer):
    make_customer(EMAIL, created_at=at(-10))

    with pytest.raises(NotFound) as error:
        resolve(PHONE, customer_id=999_999)

    assert error.value.code == "not_found"
    assert error.value.extra == {"customer": ["Unknown customer 999999."]}
    assert survivor_of(999_999) is None
    assert Identity.objects.filter(kind="phone").count() == 0
    assert Customer.objects.count() == 1


def test_an_erased_customer_id_is_refused(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))
    customer_erase(customer=ana, source="test")

    with pytest.raises(Conflict) as error:
        resolve(PHONE, customer_id=ana.pk)

    assert error.value.code == "customer_erased"
    assert error.value.extra == {"customer": [f"Customer {ana.pk} was erased."]}
    assert Identity.objects.count() == 0
    assert Customer.objects.count() == 1


def test_resolution_gives_up_when_customers_keep_changing(make_customer, monkeypatch):
    ana = make_customer(EMAIL, created_at=at(-50))
    bob = make_customer(CARD, created_at=at(-10))
    real = resolution_module._owners
    calls = []

    def shifting_owners(keys):
        # Every read differs from the one before it, as if merges kept moving identities.
        calls.append(keys)
        return {
            key: (customer_id, identity_id, len(calls) % 2 == 0)
            for key, (customer_id, identity_id, _) in real(keys).items()
        }

    monkeypatch.setattr(resolution_module, "_owners", shifting_owners)

    with pytest.raises(
        Conflict,
        match=r"^Customers changed too often while resolving; send the request again\.$",
    ) as error:
        resolve(EMAIL, CARD, PHONE)

    assert (error.value.code, error.value.extra) == ("conflict", {})
    assert len(calls) == 10  # five attempts, each reading the owners twice
    # Nothing was created, attached or merged.
    assert set(Customer.objects.values_list("pk", flat=True)) == {ana.pk, bob.pk}
    assert keys_of(ana) == {EMAIL}
    assert keys_of(bob) == {CARD}
    assert Identity.objects.count() == 2
    assert CustomerMerge.objects.count() == 0
    assert not OutboxEvent.objects.filter(type="customer.merged").exists()


def test_no_identifier_and_no_customer_is_refused():
    with pytest.raises(ValidationFailed) as error:
        customer_resolve(identifiers=[], source="test")
    assert error.value.code == "validation_error"
    assert error.value.extra == {"identifiers": ["At least one identifier."]}
    assert Customer.objects.count() == 0


# --- Batches ----------------------------------------------------------------------------------


def test_a_batch_chains_requests_into_one_customer():
    with transaction.atomic():
        resolution = identities_resolve(
            requests=[
                ResolveRequest([I(EMAIL)]),
                ResolveRequest([I(EMAIL), I(PHONE)]),
                ResolveRequest([I(PHONE), I(CARD)]),
            ],
            source="batch",
            seen_at=at(),
        )

    customer = Customer.objects.get()
    assert resolution.customer_ids == [customer.pk] * 3
    assert resolution.created == {customer.pk}
    assert resolution.merges == []
    assert resolution.attached == 3
    assert keys_of(customer) == {EMAIL, PHONE, CARD}


def test_a_batch_joining_two_new_customers_creates_one():
    with transaction.atomic():
        resolution = identities_resolve(
            requests=[
                ResolveRequest([I(EMAIL)]),
                ResolveRequest([I(PHONE)]),
                ResolveRequest([I(CARD)]),
                ResolveRequest([I(PHONE), I(EMAIL)]),
            ],
            source="batch",
            seen_at=at(),
        )

    assert Customer.objects.count() == 2
    joined = Customer.objects.get(identities__kind="email")
    card = Customer.objects.get(identities__kind="loyalty_card")
    assert resolution.customer_ids == [joined.pk, joined.pk, card.pk, joined.pk]
    assert resolution.created == {joined.pk, card.pk}
    assert resolution.merges == []
    assert keys_of(joined) == {EMAIL, PHONE}


def test_a_batch_merges_existing_customers_through_new_identifiers(make_customer):
    a = make_customer(EMAIL, created_at=at(-10))
    b = make_customer(PHONE, created_at=at(-40))
    x, y = ("loyalty_card", "X1"), ("loyalty_card", "Y1")

    with transaction.atomic():
        resolution = identities_resolve(
            requests=[
                ResolveRequest([I(EMAIL), I(x)]),
                ResolveRequest([I(PHONE), I(y)]),
                ResolveRequest([I(x), I(y)]),
                ResolveRequest([I(COOKIE)]),
            ],
            source="batch",
            seen_at=at(),
        )

    cookie_owner = Customer.objects.get(identities__kind="web_cookie")
    assert resolution.customer_ids == [b.pk, b.pk, b.pk, cookie_owner.pk]
    assert resolution.created == {cookie_owner.pk}
    assert [m.merged_customer_id for m in resolution.merges] == [a.pk]
    assert keys_of(b) == {EMAIL, PHONE, x, y}
    assert Customer.objects.count() == 2


# A small universe of identifiers, so that random requests overlap often.
UNIVERSE = [
    ("email", "e0@example.com"),
    ("email", "e1@example.com"),
    ("phone", "+33612345670"),
    ("phone", "+33612345671"),
    ("loyalty_card", "L0"),
    ("loyalty_card", "L1"),
    ("web_cookie", "w0"),
    ("web_cookie", "w1"),
    ("app_device", "d0"),
]
index_sets = st.lists(
    st.integers(min_value=0, max_value=len(UNIVERSE) - 1), min_size=1, max_size=3, unique=True
)


def _outcome(customer_ids, existing):
    """What a resolution did, independent of the ids new customers got: each request's
    customer and every customer with her identities (and their verified flags)."""

    def held(pk):
        return frozenset(
            Identity.objects.filter(customer=pk).values_list("kind", "value", "verified")
        )

    def label(pk):
        return ("existing", pk) if pk in existing else ("new", held(pk))

    per_request = [label(survivor_of(pk)) for pk in customer_ids]
    everyone = sorted((label(pk), held(pk)) for pk in Customer.objects.values_list("pk", flat=True))
    return per_request, everyone


# A request: some identifiers of the universe, whether the channel verified them, and maybe
# the n-th existing customer named by id.
requests_strategy = st.tuples(index_sets, st.booleans(), st.none() | st.integers(0, 2))


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    owned=st.lists(index_sets, max_size=3),
    requests=st.lists(requests_strategy, min_size=1, max_size=6),
)
def test_a_batch_resolves_like_its_requests_one_by_one(owned, requests):
    with transaction.atomic():
        taken, existing = set(), []
        for n, indexes in enumerate(owned):
            fresh = [i for i in indexes if i not in taken]
            if not fresh:
                continue
            taken.update(fresh)
            customer = Customer.objects.create(created_at=at(-100 + n * 7))
            existing.append(customer.pk)
            Identity.objects.bulk_create(
                Identity(
                    customer=customer,
                    kind=UNIVERSE[i][0],
                    value=UNIVERSE[i][1],
                    first_seen_at=at(-100),
                )
                for i in fresh
            )

        def build():
            return [
                ResolveRequest(
                    [I(UNIVERSE[i], verified) for i in indexes],
                    existing[named] if named is not None and named < len(existing) else None,
                )
                for indexes, verified, named in requests
            ]

        with transaction.atomic():
            batch = identities_resolve(requests=build(), source="t", seen_at=at())
            batch_outcome = _outcome(batch.customer_ids, set(existing))
            transaction.set_rollback(True)

        with transaction.atomic():
            one_by_one = []
            for request in build():
                one_by_one += identities_resolve(
                    requests=[request], source="t", seen_at=at()
                ).customer_ids
            sequential_outcome = _outcome(one_by_one, set(existing))
            transaction.set_rollback(True)

        assert batch_outcome == sequential_outcome
        transaction.set_rollback(True)


# --- Staff edits of identities ----------------------------------------------------------------


def test_identity_add_normalises_and_attaches(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))

    identity = identity_add(
        customer=ana, kind="phone", value="06 12 34 56 78", source="admin", verified=True
    )

    assert (identity.customer_id, identity.kind, identity.value, identity.verified) == (
        ana.pk,
        "phone",
        "+33612345678",
        True,
    )
    assert identity_add(customer=ana, kind="phone", value="+33612345678", source="x").pk == (
        identity.pk
    )
    assert Identity.objects.filter(customer=ana).count() == 2


def test_identity_add_refuses_someone_else_s_identifier(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))
    bob = make_customer(PHONE, created_at=at(-10))

    with pytest.raises(Conflict) as error:
        identity_add(customer=ana, kind="phone", value="0612345678", source="admin")

    assert error.value.code == "identifier_taken"
    assert error.value.extra == {"value": [f"Belongs to customer {bob.pk}."]}
    assert keys_of(ana) == {EMAIL}


def test_identity_add_refuses_blocked_and_invalid_values(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))
    BlockedIdentifier.objects.create(kind="loyalty_card", value="AB1234")

    with pytest.raises(ValidationFailed) as error:
        identity_add(customer=ana, kind="loyalty_card", value="ab 12 34", source="admin")
    assert (error.value.code, error.value.extra) == ("identifier_blocked", {"value": ["Blocked."]})

    with pytest.raises(ValidationFailed) as error:
        identity_add(customer=ana, kind="fax", value="1", source="admin")
    assert error.value.code == "validation_error"
    assert error.value.extra == {
        "value": [
            "Unknown identifier kind 'fax'; one of: email, phone, loyalty_card, "
            "pos_customer_id, app_device, social_handle, web_cookie."
        ]
    }
    assert keys_of(ana) == {EMAIL}


def test_identity_add_refuses_an_erased_or_merged_customer(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10))
    customer_erase(customer=ana, source="test")
    with pytest.raises(Conflict) as error:
        identity_add(customer=ana, kind="phone", value="0612345678", source="admin")
    assert error.value.code == "customer_erased"

    old = make_customer(CARD, created_at=at(-50))
    young = make_customer(COOKIE, created_at=at(-5))
    customer_merge(customers=[old, young])
    with pytest.raises(Conflict) as error:
        identity_add(customer=young, kind="phone", value="0612345678", source="admin")
    assert error.value.code == "customer_gone"
    assert Identity.objects.filter(kind="phone").count() == 0


def test_identity_remove_frees_the_identifier(make_customer):
    ana = make_customer(EMAIL, PHONE, created_at=at(-10))

    identity_remove(identity=Identity.objects.get(kind="phone"))

    assert keys_of(ana) == {EMAIL}
    customer, resolution = resolve(PHONE)
    assert customer.pk != ana.pk
    assert resolution.created == {customer.pk}


def test_customers_matching_finds_any_format(make_customer):
    ana = make_customer(EMAIL, PHONE, CARD, created_at=at(-10))
    make_customer(("email", "bob@example.com"), created_at=at(-10))

    for text in ("ANA@example.com", "06 12 34 56 78", "+33612345678", "ab-12 34", "AB1234"):
        assert list(customers_matching(text)) == [ana], text
    assert list(customers_matching("nobody@example.com")) == []
    assert list(customers_matching("")) == []


# --- Profile writes (creation goes through resolution) ----------------------------------------


def test_customer_create_with_identifiers_and_profile(channels):
    store = LocationFactory(code="lyon")

    customer = customer_create(
        data={
            "first_name": " Ana ",
            "city": "Lyon",
            "home_store": "lyon",
            "preferred_channel": "sms",
        },
        identifiers=[I(EMAIL), I(PHONE, verified=True)],
        source="admin",
    )

    row = Customer.objects.get()
    assert row.pk == customer.pk
    assert (row.first_name, row.city, row.home_store_id) == ("Ana", "Lyon", store.pk)
    assert (row.preferred_channel_id, row.preferred_channel_source) == (
        channels["sms"].pk,
        PreferenceSource.CUSTOMER,
    )
    assert set(row.field_times) == {"first_name", "city", "home_store", "preferred_channel"}
    assert set(Identity.objects.values_list("kind", "value", "verified", "source")) == {
        ("email", "ana@example.com", False, "admin"),
        ("phone", "+33612345678", True, "admin"),
    }


def test_customer_create_refuses_a_known_identifier(make_customer):
    make_customer(PHONE, created_at=at(-10))

    with pytest.raises(Conflict) as error:
        customer_create(data={}, identifiers=[I(EMAIL), I(PHONE)], source="admin")

    assert error.value.code == "identifier_taken"
    assert error.value.extra == {"identifiers": ["phone +33612345678 belongs to another customer."]}
    assert Customer.objects.count() == 1
    assert Identity.objects.count() == 1


def test_customer_create_drops_blocked_values_and_refuses_only_blocked_ones():
    BlockedIdentifier.objects.create(kind="email", value="ana@example.com")

    customer = customer_create(data={}, identifiers=[I(EMAIL), I(CARD)], source="admin")
    assert keys_of(customer) == {CARD}

    with pytest.raises(ValidationFailed) as error:
        customer_create(data={}, identifiers=[I(EMAIL)], source="admin")
    assert error.value.code == "identifiers_blocked"
    assert Customer.objects.count() == 1


def test_customer_create_reports_every_problem(channels):
    LocationFactory(code="wh", kind="warehouse")

    with pytest.raises(ValidationFailed) as error:
        customer_create(
            data={
                "shoe_size": "38",
                "gender": "robot",
                "home_store": "wh",
                "preferred_channel": "web",
                "time_zone": "Mars/Olympus",
                "city": 7,
            },
            identifiers=[],
            source="admin",
        )

    assert error.value.code == "validation_error"
    extra = error.value.extra
    assert set(extra) == {
        "shoe_size",
        "gender",
        "home_store",
        "preferred_channel",
        "time_zone",
        "city",
        "identifiers",
    }
    assert extra["home_store"] == ["wh is a warehouse, not a store."]
    assert extra["preferred_channel"] == ["web is not a messaging channel."]
    assert extra["city"] == ["Must be text."]
    assert extra["identifiers"] == ["At least one identifier (email, phone, loyalty card, ...)."]
    assert Customer.objects.count() == 0


def test_customer_update_changes_fields_and_stamps_their_time(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10), city="Lyon")

    updated = customer_update(
        customer=ana, data={"city": "Paris", "occupation": "Nurse", "gender": ""}, at=at(-1)
    )

    row = Customer.objects.get()
    assert updated.pk == row.pk
    assert (row.city, row.occupation, row.gender) == ("Paris", "Nurse", "")
    # Only the fields whose value changed get a time: gender stayed empty.
    assert row.field_times == {"city": iso(at(-1)), "occupation": iso(at(-1))}


def test_customer_update_refuses_bad_data_and_gone_customers(make_customer):
    ana = make_customer(EMAIL, created_at=at(-10), city="Lyon")
    with pytest.raises(ValidationFailed) as error:
        customer_update(customer=ana, data={"city": "Paris", "age_range": "young"})
    assert error.value.extra == {"age_range": ["Value 'young' is not a valid choice."]}
    assert Customer.objects.get().city == "Lyon"

    old = make_customer(PHONE, created_at=at(-50))
    customer_merge(customers=[ana, old])
    with pytest.raises(Conflict) as error:
        customer_update(customer=ana, data={"city": "Paris"})
    assert error.value.code == "customer_gone"

    customer_erase(customer=old, source="test")
    with pytest.raises(Conflict) as error:
        customer_update(customer=old, data={"city": "Paris"})
    assert error.value.code == "customer_erased"
