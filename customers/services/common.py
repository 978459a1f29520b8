"""Locks and settings shared by the customer services."""

import hashlib
import struct

from django.db import connection

from customers.identifiers import keys_q
from customers.models import BlockedIdentifier, Customer, IdentityKind, IdentityKindRule

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


def _lock_key(kind: str, value: str) -> int:
    digest = hashlib.blake2b(f"customer-identity:{kind}:{value}".encode(), digest_size=8).digest()
    return struct.unpack(">q", digest)[0]


def identifiers_lock(keys) -> None:
    """Serialise every resolution that touches one of these ``(kind, value)`` identifiers until
    the transaction ends (PostgreSQL advisory locks, taken in one order). Two requests that
    both find an identifier unknown thus cannot each create a customer for it. SQLite already
    serialises writers."""
    if connection.vendor != "postgresql":
        return
    lock_keys = sorted({_lock_key(kind, value) for kind, value in keys})
    if not lock_keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM "
            "(SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS keys",
            [lock_keys],
        )


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
