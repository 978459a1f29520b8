"""Staff edits of identifiers: add one to a customer, remove one, block values."""

from django.db import transaction
from django.utils import timezone

from customers.identifiers import normalize
from customers.models import BlockedIdentifier, Customer, Identity
from omni.exceptions import Conflict, ValidationFailed

from .common import customer_lock, identifiers_lock


def _normalized(kind, value, field="value") -> str:
    try:
        return normalize(kind, value)
    except ValueError as error:
        raise ValidationFailed(str(error), extra={field: [str(error)]}) from None


@transaction.atomic
def identity_add(
    *, customer: Customer, kind: str, value: str, source: str, verified: bool = False
) -> Identity:
    """Attach an identifier to a customer. One that belongs to another customer is refused
    (merge the two instead)."""
    value = _normalized(kind, value)
    identifiers_lock([(kind, value)])
    locked = customer_lock([customer.pk])
    if not locked:
        raise Conflict(f"Customer {customer.pk} no longer exists (merged?).", code="customer_gone")
    if locked[0].erased_at is not None:
        raise Conflict("This customer was erased.", code="customer_erased")
    existing = Identity.objects.filter(kind=kind, value=value).first()
    if existing is not None:
        if existing.customer_id == customer.pk:
            return existing
        raise Conflict(
            f"{kind} {value} belongs to customer {existing.customer_id}; merge them instead.",
            code="identifier_taken",
            extra={"value": [f"Belongs to customer {existing.customer_id}."]},
        )
    if BlockedIdentifier.objects.filter(kind=kind, value=value).exists():
        raise ValidationFailed(
            f"{kind} {value} is blocked.", code="identifier_blocked", extra={"value": ["Blocked."]}
        )
    return Identity.objects.create(
        customer=customer,
        kind=kind,
        value=value,
        verified=verified,
        source=source[:80],
        first_seen_at=timezone.now(),
    )


@transaction.atomic
def identity_remove(*, identity: Identity) -> None:
    identifiers_lock([(identity.kind, identity.value)])
    Identity.objects.filter(pk=identity.pk).delete()


@transaction.atomic
def blocked_identifier_add(*, kind: str, value: str, reason: str = "") -> BlockedIdentifier:
    """Block a value: it identifies no one from now on. Identities that already hold it are
    removed, so it stops joining events to those customers; ``unlinked`` on the result lists
    the ids of those customers. The value's lock is taken first, so a resolution running now
    either finished before (and its identity is removed here) or sees the block."""
    value = _normalized(kind, value)
    identifiers_lock([(kind, value)])
    blocked, _ = BlockedIdentifier.objects.get_or_create(
        kind=kind, value=value, defaults={"reason": reason[:200]}
    )
    holders = Identity.objects.filter(kind=kind, value=value)
    blocked.unlinked = sorted(holders.values_list("customer_id", flat=True))
    holders.delete()
    return blocked
