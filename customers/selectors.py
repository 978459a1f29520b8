"""Reads about customers that more than one caller needs."""

from django.db.models import QuerySet
from django.utils import timezone

from .identifiers import guess_identifiers, keys_q
from .models import ConsentState, ConsentStatus, Customer, Identity, Touchpoint


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


def customer_timeline(customer_id: int) -> QuerySet:
    """The customer's touchpoints across channels, newest first (served by the timeline
    index)."""
    return Touchpoint.objects.filter(customer_id=customer_id).order_by("-occurred_at", "-id")


def consent_current(customer_id: int) -> dict[int, ConsentState]:
    """The current consent per messaging channel id."""
    return {
        state.channel_id: state
        for state in ConsentState.objects.filter(customer_id=customer_id).select_related("channel")
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
