"""POS sales: an order of the store's POS channel, the goods gone over the counter."""

from django.db import transaction

from inventory.models import Location
from omni.exceptions import ValidationFailed
from omni.models import Channel, ChannelKind
from orders.models import FulfilmentMethod, Order

from .common import LineInput
from .placement import order_place


def pos_channel(channel: Channel | None = None) -> Channel:
    """The channel a till sells on: the one given (it must be a POS channel) or the first
    active POS channel."""
    if channel is None:
        channel = (
            Channel.objects.filter(kind=ChannelKind.STORE_POS, is_active=True)
            .order_by("code")
            .first()
        )
        if channel is None:
            raise ValidationFailed(
                "There is no active store (POS) channel.", extra={"channel": ["Required."]}
            )
    if channel.kind != ChannelKind.STORE_POS:
        raise ValidationFailed(
            f"{channel.code} is not a store (POS) channel.",
            code="not_a_pos_channel",
            extra={"channel": [f"{channel.code} is not a POS channel."]},
        )
    return channel


@transaction.atomic
def pos_sale_record(
    *,
    store: Location,
    lines: list[LineInput],
    source: str,
    channel: Channel | None = None,
    identifiers=None,
    customer=None,
    receipt: str | None = None,
    actor=None,
) -> Order:
    """Record a till's sale at ``store``: an in-store order on the POS channel (lines at the
    channel's price unless the till gives the price it charged), a sale movement at the store
    for each line, and, when the customer gave a phone, email or loyalty card, the purchase on
    her timeline. ``receipt`` (the till's receipt id) makes a replay harmless: the same
    receipt twice is refused with ``duplicate_order``."""
    return order_place(
        channel=pos_channel(channel),
        lines=lines,
        fulfilment_method=FulfilmentMethod.IN_STORE,
        store=store,
        source=source,
        customer=customer,
        identifiers=identifiers,
        external_reference=receipt,
        allow_price=True,
        actor=actor,
    )
