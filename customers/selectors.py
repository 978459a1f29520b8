"""Reads about customers that more than one caller needs."""

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from omni.exceptions import NotFound

from .identifiers import guess_identifiers, keys_q
from .models import (
    ConsentState,
    ConsentStatus,
    Customer,
    CustomerMerge,
    Identity,
    IdentityKind,
    Touchpoint,
)


def customers_matching(text: str) -> QuerySet:
    """Customers any identifier of whom matches ``text`` once normalised (an email in any case,
    a phone number in any format, a loyalty card with or without spaces, ...)."""
    guesses = guess_identifiers(text)
    if not guesses:
        return Customer.objects.none()
    ids = set(
        Identity.objects.filter(keys_q(guesses)).order_by().values_list("customer_id", flat=True)
    )
    return Customer.objects.filter(pk__in=sorted(ids))


def survivor_of(customer_id: int) -> int | None:
    """The customer a (possibly merged) id now belongs to, or None if it never existed or was
    deleted. Follows chains of merges."""
    seen = set()
    while customer_id not in seen:
        seen.add(customer_id)
        if Customer.objects.filter(pk=customer_id).exists():
            return customer_id
        nxt = (
            CustomerMerge.objects.filter(merged_customer_id=customer_id)
            .values_list("survivor_id", flat=True)
            .first()
        )
        if nxt is None:
            return None
        customer_id = nxt
    return None


def customer_not_found(pk) -> NotFound:
    """The error for a customer id that has no row: ``customer_merged`` naming the survivor
    when it was merged away, else ``not_found``."""
    survivor = survivor_of(int(pk))
    if survivor is not None and survivor != int(pk):
        return NotFound(
            f"Customer {pk} was merged into customer {survivor}; use that id.",
            code="customer_merged",
            extra={"survivor": survivor},
        )
    return NotFound(f"No customer {pk}.")


def customer_get(pk, queryset=None) -> Customer:
    """The customer ``pk`` (from ``queryset`` when given), or ``customer_not_found``."""
    queryset = Customer.objects.all() if queryset is None else queryset
    customer = queryset.filter(pk=pk).first()
    if customer is None:
        raise customer_not_found(pk)
    return customer


def customer_timeline(customer_id: int) -> QuerySet:
    """The customer's touchpoints across channels, newest first (served by the timeline
    index)."""
    return Touchpoint.objects.filter(customer_id=customer_id).order_by("-occurred_at", "-id")


def consent_current(customer_id: int) -> dict[int, ConsentState]:
    """The current consent per messaging channel id."""
    return {
        state.channel_id: state
        for state in ConsentState.objects.filter(customer_id=customer_id).select_related(
            "channel", "consent"
        )
    }


def may_message(customer: Customer | int, channel, at=None) -> bool:
    """May we send this customer a message on ``channel`` now? Only with her opt-in as the
    latest decision for that channel (and never once she was erased). One query."""
    customer_id = customer.pk if isinstance(customer, Customer) else customer
    at = at or timezone.now()
    return ConsentState.objects.filter(
        customer_id=customer_id,
        customer__erased_at__isnull=True,
        channel_id=channel.pk if hasattr(channel, "pk") else channel,
        status=ConsentStatus.OPTED_IN,
        occurred_at__lte=at,
    ).exists()


def customers_contactable(channel) -> QuerySet:
    """Customers who opted in on ``channel`` (for campaigns, set-based)."""
    return Customer.objects.filter(
        erased_at__isnull=True,
        consent_states__channel=channel,
        consent_states__status=ConsentStatus.OPTED_IN,
    )


def main_identity(kind: str) -> Subquery:
    """The customer's main identifier of ``kind`` (verified first, then the oldest), served by
    the (customer, kind) index; for annotating customer querysets."""
    return Subquery(
        Identity.objects.filter(customer=OuterRef("pk"), kind=kind)
        .order_by("-verified", "first_seen_at", "pk")
        .values("value")[:1]
    )


def segment_member_rows(segment):
    """A segment's members for export, by id: ``(id, first name, last name, email, phone,
    home store code, lifetime revenue, last seen)``."""
    from .segments import segment_queryset

    return (
        segment_queryset(segment)
        .annotate(email=main_identity(IdentityKind.EMAIL), phone=main_identity(IdentityKind.PHONE))
        .order_by("pk")
        .values_list(
            "pk",
            "first_name",
            "last_name",
            "email",
            "phone",
            "home_store__code",
            "lifetime_revenue",
            "last_seen_at",
        )
    )
