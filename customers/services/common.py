"""Locks and settings shared by the customer services."""

from customers.identifiers import keys_q
from customers.models import BlockedIdentifier, Customer, IdentityKind, IdentityKindRule
from omni.db import advisory_xact_lock

# Identifier kinds that never merge two customers unless staff say otherwise: a web cookie or a
# device can be shared by several people.
NEVER_MERGE_DEFAULT = (IdentityKind.WEB_COOKIE, IdentityKind.APP_DEVICE)


def customer_lock(ids) -> list[Customer]:
    """Lock the customers ``ids`` in primary-key order (the one lock order for customers) and
    return those that still exist."""
    ids = sorted(set(ids))
    if not ids:
        return []
    return list(Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk"))


def identifiers_lock(keys) -> None:
    """Serialise every resolution that touches one of these ``(kind, value)`` identifiers until
    the transaction ends (PostgreSQL advisory locks, taken in one order). Two requests that
    both find an identifier unknown thus cannot each create a customer for it. SQLite already
    serialises writers."""
    advisory_xact_lock(f"customer-identity:{kind}:{value}" for kind, value in keys)


def merge_kinds() -> set[str]:
    """Identifier kinds that may merge two customers, as staff set them."""
    rules = dict(IdentityKindRule.objects.values_list("kind", "may_merge"))
    return {
        kind.value
        for kind in IdentityKind
        if rules.get(kind.value, kind not in NEVER_MERGE_DEFAULT)
    }


def blocked_keys(keys) -> set[tuple[str, str]]:
    """Which of these ``(kind, value)`` identifiers staff blocked."""
    keys = set(keys)
    if not keys:
        return set()
    return set(
        BlockedIdentifier.objects.filter(keys_q(keys)).order_by().values_list("kind", "value")
    )
