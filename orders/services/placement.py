"""Placing an order: from a cart or directly (marketplace, app, POS), at the channel's prices,
with every line's stock held through inventory, or nothing.

Sourcing by fulfilment method:
- ship: the channel's allocation strategy over the locations that feed it (a line may split);
- pickup at store S: what S can give is held at S (pinned, never moved); the rest of a line
  comes from the nearest other location feeding the channel that has all of it, by a transfer
  to S requested at once (its stock held at the source), and the order waits for it with the
  time it should be ready;
- in store: the goods leave the counter now, a sale at the store, accepted even when the
  ledger says zero (inventory's rule for in-store sales).
"""

import math
from collections import defaultdict
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from customers.models import TouchpointKind
from customers.services.common import identifiers_lock
from inventory.models import Location
from inventory.services import (
    ReserveLine,
    channel_sources,
    distance_km,
    sellable_quantities,
    stock_level_lock,
    stock_reserve,
    stock_sell,
    transfer_request,
)
from inventory.services.common import require_active_location
from omni.exceptions import Conflict, InsufficientStock, ValidationFailed
from orders.models import (
    Cart,
    CartStatus,
    Fulfilment,
    FulfilmentMethod,
    Order,
    OrderLine,
    OrderStatus,
    OrderStatusChange,
)

from .carts import cart_lock
from .common import (
    LineInput,
    PricedLine,
    actor_or_none,
    new_pickup_code,
    new_token,
    parse_customer,
    price_lines,
    require_sales_channel,
    resolve_customer,
    save_with_unique_number,
    timeline,
)
from .lifecycle import emit

NUMBER_PREFIX = "O"
TEXT_LIMITS = {
    "contact_name": 200,
    "contact_email": 254,
    "contact_phone": 32,
    "shipping_address": 1000,
    "note": 500,
    "external_reference": 120,
}


def _text(values: dict) -> dict:
    clean, errors = {}, {}
    for field, limit in TEXT_LIMITS.items():
        value = values.get(field)
        value = "" if value is None else str(value).strip()
        if len(value) > limit:
            errors[field] = [f"At most {limit} characters."]
        clean[field] = value
    if errors:
        field = next(iter(errors))
        raise ValidationFailed(f"{field.replace('_', ' ')} is too long.", extra=errors)
    return clean


def _check_store(method: str, store: Location | None, shipping_address: str) -> None:
    if method not in FulfilmentMethod.values:
        raise ValidationFailed(
            f"Unknown fulfilment method {method!r}.",
            extra={"fulfilment_method": [f"One of: {', '.join(FulfilmentMethod.values)}."]},
        )
    if method == FulfilmentMethod.SHIP:
        if store is not None:
            raise ValidationFailed(
                "A shipped order has no store; choose pickup to collect in a store.",
                extra={"store": ["Not for shipped orders."]},
            )
        if not shipping_address:
            raise ValidationFailed(
                "A shipped order needs the address to ship to.",
                extra={"shipping_address": ["Required to ship."]},
            )
        return
    if store is None:
        raise ValidationFailed(
            "Say which store the customer collects in or buys at.",
            extra={"store": ["Required for pickup and in-store orders."]},
        )
    require_active_location(store, "store")
    if method == FulfilmentMethod.PICKUP and not store.offers_pickup:
        raise ValidationFailed(
            f"{store.code} does not offer pickup.",
            code="no_pickup_here",
            extra={"store": [f"{store.code} does not offer pickup."]},
        )


@transaction.atomic
def order_place(
    *,
    channel,
    lines: list[LineInput],
    fulfilment_method: str,
    source: str,
    store: Location | None = None,
    customer=None,
    identifiers=None,
    contact_name: str = "",
    contact_email: str = "",
    contact_phone: str = "",
    shipping_address: str = "",
    note: str = "",
    external_reference: str | None = None,
    near: tuple | None = None,
    cart: Cart | None = None,
    allow_price: bool = False,
    actor=None,
) -> Order:
    """Place an order on ``channel`` and hold its stock, or refuse it whole.

    ``identifiers`` (and/or ``customer``) name the customer through identity resolution.
    ``external_reference`` is the channel's own order id: the same one twice is refused with
    ``duplicate_order`` naming the order placed first. A short line is refused with
    ``insufficient_stock`` and how much each short line can have."""
    require_sales_channel(channel)
    text = _text(
        {
            "contact_name": contact_name,
            "contact_email": contact_email,
            "contact_phone": contact_phone,
            "shipping_address": shipping_address,
            "note": note,
            "external_reference": external_reference,
        }
    )
    _check_store(fulfilment_method, store, text["shipping_address"])
    reference = text["external_reference"] or None
    if reference is not None:
        _refuse_duplicate(channel, reference)
    priced, currency = price_lines(channel=channel, lines=lines, allow_price=allow_price)
    customer = resolve_customer(
        customer=customer, identifiers=identifiers, source=source, actor=actor
    )
    now = timezone.now()
    subtotal = sum((p.line_total for p in priced), start=priced[0].unit_price * 0)
    in_store = fulfilment_method == FulfilmentMethod.IN_STORE
    order = Order(
        channel=channel,
        customer=customer,
        cart=cart,
        external_reference=reference,
        status=OrderStatus.COMPLETED if in_store else OrderStatus.PLACED,
        fulfilment_method=fulfilment_method,
        store=store,
        pickup_code=new_pickup_code() if fulfilment_method == FulfilmentMethod.PICKUP else "",
        public_token=new_token(),
        currency=currency,
        subtotal=subtotal,
        total=subtotal,
        contact_name=text["contact_name"],
        contact_email=text["contact_email"],
        contact_phone=text["contact_phone"],
        shipping_address=text["shipping_address"],
        note=text["note"],
        placed_at=now,
        closed_at=now if in_store else None,
        source=source[:80],
        created_by=actor_or_none(actor),
    )
    try:
        save_with_unique_number(order, NUMBER_PREFIX)
    except IntegrityError as exc:
        if "external_reference" in str(exc):
            _refuse_duplicate(channel, reference, racing=True)
        raise
    order_lines = OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order,
                line_number=number,
                variant=p.variant,
                sku=p.variant.sku,
                title=p.title,
                quantity=p.quantity,
                unit_price=p.unit_price,
                line_total=p.line_total,
            )
            for number, p in enumerate(priced, start=1)
        ]
    )
    if fulfilment_method == FulfilmentMethod.SHIP:
        stock_reserve(
            channel=channel,
            reference=order.number,
            near=near,
            shipping=True,
            lines=[
                ReserveLine(variant=p.variant, quantity=p.quantity, line_reference=str(n))
                for n, p in enumerate(priced, start=1)
            ],
        )
    elif fulfilment_method == FulfilmentMethod.PICKUP:
        _source_pickup(order, order_lines, priced, actor)
    else:
        _sell_in_store(order, priced, source, actor)
    placed = OrderStatusChange.objects.create(
        order=order,
        from_status="",
        to_status=order.status,
        at=now,
        source=source[:80],
        actor=actor_or_none(actor),
        note="Placed",
    )
    if fulfilment_method == FulfilmentMethod.SHIP:
        # Everything its page shows is in hand (nothing else wrote to it): callers show it
        # without reading it back (``orders.selectors.order_detail_queryset`` reads the same).
        _hold_relations(order, lines=order_lines, history=[placed], fulfilments=[], returns=[])
    if cart is not None:
        # An anonymous cart checked out with identifiers joins the customer with its order.
        Cart.objects.filter(pk=cart.pk).update(
            status=CartStatus.CONVERTED,
            closed_at=now,
            last_activity_at=now,
            customer=customer if customer is not None else cart.customer,
        )
    timeline(
        order,
        TouchpointKind.PURCHASE,
        "placed",
        location=store,
        at=now,
        properties={
            "amount": str(order.total),
            "currency": order.currency,
            "fulfilment_method": fulfilment_method,
            "items": sum(p.quantity for p in priced),
        },
    )
    emit(order, "order.placed")
    return order


def _hold_relations(order: Order, **relations) -> None:
    """Cache related rows on ``order`` as ``prefetch_related`` would (its managers then
    answer from them without a query)."""
    cache = {}
    for name, rows in relations.items():
        queryset = getattr(order, name).all()  # lazy: nothing is read
        queryset._result_cache = list(rows)
        queryset._prefetch_done = True
        cache[name] = queryset
    order._prefetched_objects_cache = cache


def _refuse_duplicate(channel, reference: str, racing: bool = False):
    number = (
        Order.objects.filter(channel=channel, external_reference=reference)
        .values_list("number", flat=True)
        .first()
    )
    if number is None and not racing:
        return
    raise Conflict(
        f"{channel.code} order {reference} was placed already"
        + (f" as {number}." if number else "."),
        code="duplicate_order",
        extra={
            "external_reference": [f"Already placed as {number or 'another order'}."],
            "order": number,
        },
    )


def _sell_in_store(order: Order, priced: list[PricedLine], source: str, actor) -> None:
    for p in priced:
        stock_sell(
            location=order.store,
            variant=p.variant,
            quantity=p.quantity,
            channel=order.channel,
            source="pos" if source.startswith("client:") else "store",
            actor=actor_or_none(actor),
            reference=order.number,
        )
    Fulfilment.objects.create(
        order=order,
        method=FulfilmentMethod.IN_STORE,
        location=order.store,
        units=sum(p.quantity for p in priced),
        created_at=order.placed_at,
        actor=actor_or_none(actor),
    )


def _source_pickup(order: Order, order_lines: list[OrderLine], priced, actor) -> None:
    store = order.store
    channel = order.channel
    variant_ids = [p.variant.pk for p in priced]
    candidates = [loc for loc, _priority in channel_sources(channel) if loc.pk != store.pk]
    if store.latitude is not None:

        def distance(loc):
            if loc.latitude is None:
                return math.inf
            return distance_km((store.latitude, store.longitude), (loc.latitude, loc.longitude))

        candidates.sort(key=distance)  # stable: priority breaks ties
    # Plan under the locks of every stock row the plan may use (the one lock order), so that
    # what the plan reads is what the reservations find: a concurrent order cannot take the
    # store's last unit between the two and fail this one while another location has stock.
    pairs = {(loc.pk, v) for loc in [store, *candidates] for v in variant_ids}
    stock_level_lock(pairs)
    sellable = sellable_quantities(pairs)
    here, transfers, short = [], defaultdict(list), []
    for index, (line, p) in enumerate(zip(order_lines, priced, strict=True)):
        at_store = min(p.quantity, sellable[(store.pk, p.variant.pk)])
        rest = p.quantity - at_store
        if at_store:
            here.append(
                ReserveLine(
                    variant=p.variant,
                    quantity=at_store,
                    location=store,
                    line_reference=line.reference,
                )
            )
        if not rest:
            continue
        source = next((loc for loc in candidates if sellable[(loc.pk, p.variant.pk)] >= rest), None)
        if source is None:
            best = max((sellable[(loc.pk, p.variant.pk)] for loc in candidates), default=0)
            short.append(
                {
                    "index": index,
                    "sku": p.variant.sku,
                    "requested": p.quantity,
                    "available": at_store + best,
                }
            )
            continue
        transfers[source].append((line, rest))
    if short:
        first = short[0]
        raise InsufficientStock(
            f"Not enough stock for {first['sku']} to collect at {store.code}: "
            f"{first['requested']} requested, {first['available']} available."
            + (f" ({len(short)} lines are short.)" if len(short) > 1 else ""),
            extra={"lines": short},
        )
    if here:
        stock_reserve(channel=channel, reference=order.number, lines=here)
    if not transfers:
        return
    expected = order.placed_at + timedelta(hours=store.pickup_transfer_hours)
    for source in sorted(transfers, key=lambda loc: loc.pk):
        wanted = transfers[source]
        transfer = transfer_request(
            from_location=source,
            to_location=store,
            lines=[{"sku": line.variant, "quantity": rest} for line, rest in wanted],
            reference=order.number,
            note=f"For pickup order {order.number}",
            expected_at=expected,
            actor=actor_or_none(actor),
        )
        for line, rest in wanted:
            line.transfer = transfer
            line.transfer_quantity = rest
    OrderLine.objects.bulk_update(
        [line for wanted in transfers.values() for line, _rest in wanted],
        ["transfer", "transfer_quantity"],
    )
    order.status = OrderStatus.AWAITING_TRANSFER
    order.expected_ready_at = expected
    order.save(update_fields=["status", "expected_ready_at", "updated_at"])


@transaction.atomic
def order_place_from_cart(
    *, cart: Cart, fulfilment_method: str, source: str, store=None, actor=None, **details
) -> Order:
    """Turn an open cart into an order (online checkout, or "continue the cart she left
    online" at the counter as a pickup or an in-store sale). The cart converts with it."""
    # Identifiers are locked before the cart's customer, in the order identity resolution
    # takes them (identifiers, then customers), so a concurrent placement with the same
    # identifiers cannot wait on us while we wait on it.
    identifiers_lock(i.key for i in parse_customer(details.get("identifiers")))
    cart = cart_lock(cart)
    if cart.status != CartStatus.OPEN:
        raise Conflict(
            f"This cart is {cart.get_status_display().lower()}; it cannot become an order.",
            code="cart_closed",
            extra={"cart": [f"The cart is {cart.status}."]},
        )
    lines = [
        LineInput(line.variant, line.quantity) for line in cart.lines.select_related("variant")
    ]
    if not lines:
        raise ValidationFailed("The cart is empty.", code="cart_empty", extra={"lines": ["Empty."]})
    return order_place(
        channel=cart.channel,
        lines=lines,
        fulfilment_method=fulfilment_method,
        source=source,
        store=store,
        customer=cart.customer,
        cart=cart,
        actor=actor,
        **details,
    )
