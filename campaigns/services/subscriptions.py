"""Back-in-stock subscriptions: a customer waiting for a variant on a sales channel.

A subscription is open until a back-in-stock campaign uses it (``notified_at``); one customer
has at most one open subscription per (variant, sales channel), which the partial unique
constraint ``stock_subscription_open_unique`` enforces. Subscribing again while one is open
returns that one: the row is inserted and, when the constraint refuses it (a repeat, or a
concurrent request that won), the open row is read back; nothing is checked first.

Subscribing implies no consent: the campaign that uses the subscription still needs the
customer's opt-in on the messaging channel it sends on (``MessagingRule.consent_required``).
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import BackInStockSubscription
from catalog.models import ChannelListing, Variant
from customers.identifiers import Identifier
from customers.models import Customer
from customers.services.common import customer_lock
from customers.services.resolution import customer_resolve
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.models import Channel

MAX_SOURCE = 80
OPEN_UNIQUE = "stock_subscription_open_unique"


def _check_target(variant: Variant, channel: Channel) -> None:
    """The variant must be active and listed on the sales channel."""
    if channel is None or not channel.is_sales:
        raise ValidationFailed(
            "Customers wait for an item on a sales channel (web shop, app, ...), not on "
            f"{getattr(channel, 'code', 'nothing')}.",
            code="not_a_sales_channel",
            extra={"channel": ["Choose a sales channel."]},
        )
    if not channel.is_active:
        raise ValidationFailed(
            f"The channel {channel.code} is not active.",
            code="channel_inactive",
            extra={"channel": [f"{channel.code} is not active."]},
        )
    if not variant.is_active:
        raise ValidationFailed(
            f"{variant.sku} is no longer sold; it will not be back.",
            code="variant_inactive",
            extra={"sku": [f"{variant.sku} is inactive."]},
        )
    if not ChannelListing.objects.filter(variant=variant, channel=channel).exists():
        raise ValidationFailed(
            f"{variant.sku} is not listed on {channel.code}.",
            code="not_listed",
            extra={"sku": [f"{variant.sku} is not listed on {channel.code}."]},
        )


def _customer(customer, identifiers, source, actor) -> Customer:
    if identifiers:
        customer, _resolution = customer_resolve(
            identifiers=list(identifiers),
            customer_id=customer.pk if customer is not None else None,
            source=source,
            actor=actor,
        )
    if customer is None:
        raise ValidationFailed(
            "Say who is waiting: a customer or her identifiers.",
            code="customer_required",
            extra={"customer": ["Give a customer id or identifiers."]},
        )
    return customer


@transaction.atomic
def subscription_create(
    *,
    variant: Variant,
    channel: Channel,
    source: str,
    customer: Customer | None = None,
    identifiers: list[Identifier] | None = None,
    actor=None,
) -> BackInStockSubscription:
    """Subscribe a customer to ``variant`` coming back on the sales ``channel``.

    The customer is given, or found (created, merged) from ``identifiers`` through identity
    resolution, in the same transaction. An open subscription for the same customer, variant
    and channel is returned rather than duplicated; ``subscription.created`` says which.
    Refused: a channel that is not an active sales channel, an inactive variant, a variant not
    listed on the channel (``ValidationFailed``), an erased customer (``Conflict``
    ``customer_erased``).
    """
    source = (source or "").strip()
    if not source or len(source) > MAX_SOURCE:
        raise ValidationFailed(
            f"Say where the subscription comes from (at most {MAX_SOURCE} characters).",
            extra={"source": [f"1 to {MAX_SOURCE} characters."]},
        )
    _check_target(variant, channel)
    customer = _customer(customer, identifiers, source, actor)
    locked = customer_lock([customer.pk])
    if not locked:
        raise Conflict(f"Customer {customer.pk} no longer exists (merged?).", code="customer_gone")
    if locked[0].erased_at is not None:
        raise Conflict(
            f"Customer {customer.pk} was erased.",
            code="customer_erased",
            extra={"customer": [f"Customer {customer.pk} was erased."]},
        )
    try:
        with transaction.atomic():
            subscription = BackInStockSubscription.objects.create(
                customer_id=customer.pk,
                variant=variant,
                channel=channel,
                source=source,
                created_at=timezone.now(),
            )
    except IntegrityError as error:
        # The partial unique constraint: an open subscription exists (a repeat, or a
        # concurrent request committed first). Any other integrity error is not ours.
        subscription = (
            BackInStockSubscription.objects.filter(
                customer_id=customer.pk,
                variant=variant,
                channel=channel,
                notified_at__isnull=True,
            )
            .select_related("customer", "variant", "channel")
            .first()
        )
        if subscription is None:
            raise error
        subscription.created = False
        return subscription
    subscription.created = True
    return subscription


def subscription_lock(pk) -> BackInStockSubscription | None:
    """The subscription ``pk``, locked (None if it no longer exists)."""
    return BackInStockSubscription.objects.select_for_update().filter(pk=pk).first()


@transaction.atomic
def subscription_cancel(*, subscription: BackInStockSubscription) -> BackInStockSubscription:
    """The customer no longer waits: the open subscription is removed (the model keeps no
    cancelled state). One already used by a back-in-stock campaign stays as its record and is
    refused with ``Conflict`` ``subscription_used``; one already gone is ``NotFound``."""
    current = subscription_lock(subscription.pk)
    if current is None:
        raise NotFound(f"No subscription {subscription.pk}.")
    if current.notified_at is not None:
        raise Conflict(
            f"Subscription {current.pk} was already used: the customer was told on "
            f"{current.notified_at:%Y-%m-%d}.",
            code="subscription_used",
        )
    pk = current.pk
    current.delete()
    current.pk = pk  # the caller still names it
    return current
