"""Carts: anonymous (a token) until identity resolution names the customer; each change is a
touchpoint on her timeline. A cart idle for ``OMNI_CART_ABANDON_DAYS`` is closed as
abandoned; touching it again opens it again."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from customers.models import TouchpointKind
from customers.services.common import identifiers_lock
from customers.services.touchpoints import touchpoint_record
from inventory.services.common import variant_of, variants_by_sku
from omni.exceptions import Conflict, NotFound, ValidationFailed
from orders.models import Cart, CartLine, CartStatus

from .common import (
    SOURCE,
    LineInput,
    lock_with_customer,
    new_token,
    parse_customer,
    price_lines,
    require_sales_channel,
    resolve_customer,
)


def cart_lock(cart: Cart) -> Cart:
    return lock_with_customer(Cart, cart.pk)


def _writable(cart: Cart, now) -> None:
    if cart.status == CartStatus.CONVERTED:
        raise Conflict(
            "This cart became an order; it cannot change any more.",
            code="cart_closed",
            extra={"cart": ["The cart was converted to an order."]},
        )
    if cart.status == CartStatus.ABANDONED:  # she came back
        cart.status = CartStatus.OPEN
        cart.closed_at = None
    cart.last_activity_at = now


def _touch(cart: Cart, kind: str, variant, quantity: int, at, event_id: str | None = None):
    if cart.customer_id is None or cart.customer.erased_at is not None:
        return
    touchpoint_record(
        customer=cart.customer,
        channel=cart.channel,
        kind=kind,
        source=SOURCE,
        event_id=event_id or f"cart:{cart.token}:{secrets.token_hex(6)}",
        occurred_at=at,
        properties={"cart": cart.token, "sku": variant.sku, "quantity": quantity},
    )


@transaction.atomic
def cart_create(
    *,
    channel,
    source: str,
    customer=None,
    identifiers=None,
    external_reference: str = "",
    lines: list[LineInput] | None = None,
    actor=None,
) -> Cart:
    """Open a cart on a sales channel, for a customer if identifiers are given (resolved
    through the one identity service), with its first lines if any."""
    require_sales_channel(channel)
    customer = resolve_customer(
        customer=customer, identifiers=identifiers, source=source, actor=actor
    )
    now = timezone.now()
    cart = Cart.objects.create(
        token=new_token(),
        channel=channel,
        customer=customer,
        currency=channel.currency,
        external_reference=(external_reference or "").strip()[:120],
        created_at=now,
        last_activity_at=now,
        source=source[:80],
    )
    if lines:
        priced, currency = price_lines(channel=channel, lines=lines)
        cart.currency = currency
        cart.save(update_fields=["currency"])
        CartLine.objects.bulk_create(
            [
                CartLine(
                    cart=cart,
                    variant=p.variant,
                    quantity=p.quantity,
                    unit_price=p.unit_price,
                    added_at=now,
                    updated_at=now,
                )
                for p in priced
            ]
        )
        for p in priced:
            _touch(cart, TouchpointKind.ADD_TO_CART, p.variant, p.quantity, now)
    return cart


@transaction.atomic
def cart_line_add(*, cart: Cart, sku, quantity=1, source: str = SOURCE) -> CartLine:
    """Add units of a SKU (a new line, or more of one already there)."""
    cart = cart_lock(cart)
    now = timezone.now()
    _writable(cart, now)
    (priced,), currency = price_lines(channel=cart.channel, lines=[LineInput(sku, quantity)])
    if currency != cart.currency and cart.lines.exclude(variant=priced.variant).exists():
        raise ValidationFailed(
            f"{priced.variant.sku} is priced in {currency}; this cart is in {cart.currency}.",
            code="mixed_currencies",
            extra={"sku": [f"Priced in {currency}, not {cart.currency}."]},
        )
    line = CartLine.objects.filter(cart=cart, variant=priced.variant).first()
    if line is None:
        line = CartLine.objects.create(
            cart=cart,
            variant=priced.variant,
            quantity=priced.quantity,
            unit_price=priced.unit_price,
            added_at=now,
            updated_at=now,
        )
    else:
        line.quantity += priced.quantity
        line.unit_price = priced.unit_price
        line.updated_at = now
        line.save(update_fields=["quantity", "unit_price", "updated_at"])
    cart.currency = currency
    cart.save(update_fields=["status", "closed_at", "last_activity_at", "currency"])
    _touch(cart, TouchpointKind.ADD_TO_CART, priced.variant, priced.quantity, now)
    return line


@transaction.atomic
def cart_line_update(*, cart: Cart, sku, quantity, source: str = SOURCE) -> CartLine | None:
    """Set a line's quantity; 0 removes the line. Returns the line (None once removed)."""
    cart = cart_lock(cart)
    now = timezone.now()
    _writable(cart, now)
    line = _line(cart, sku)
    if not isinstance(quantity, bool) and str(quantity).strip() == "0":
        _remove(cart, line, now)
        return None
    (priced,), _currency = price_lines(channel=cart.channel, lines=[LineInput(sku, quantity)])
    change = priced.quantity - line.quantity
    line.quantity = priced.quantity
    line.unit_price = priced.unit_price
    line.updated_at = now
    line.save(update_fields=["quantity", "unit_price", "updated_at"])
    cart.save(update_fields=["status", "closed_at", "last_activity_at"])
    if change:
        kind = TouchpointKind.ADD_TO_CART if change > 0 else TouchpointKind.REMOVE_FROM_CART
        _touch(cart, kind, line.variant, abs(change), now)
    return line


@transaction.atomic
def cart_line_remove(*, cart: Cart, sku, source: str = SOURCE) -> None:
    cart = cart_lock(cart)
    now = timezone.now()
    _writable(cart, now)
    _remove(cart, _line(cart, sku), now)


def _line(cart: Cart, sku) -> CartLine:
    variant = variant_of(variants_by_sku([sku]), sku)
    try:
        return CartLine.objects.select_related("variant").get(cart=cart, variant=variant)
    except CartLine.DoesNotExist:
        raise NotFound(
            f"{variant.sku} is not in this cart.", extra={"sku": [f"{variant.sku} is not in it."]}
        ) from None


def _remove(cart: Cart, line: CartLine, now) -> None:
    line.delete()
    cart.save(update_fields=["status", "closed_at", "last_activity_at"])
    _touch(cart, TouchpointKind.REMOVE_FROM_CART, line.variant, line.quantity, now)


@transaction.atomic
def cart_identify(*, cart: Cart, source: str, identifiers=None, customer=None, actor=None) -> Cart:
    """The shopper said who she is (signed in, typed her email): the cart joins her profile
    through identity resolution, and what she put in it while anonymous reaches her
    timeline. A cart of one customer cannot pass to another (identifiers that name her and
    someone else merge the two, and the cart stays with the survivor)."""
    # Identifiers first, then the cart's customer: the order identity resolution locks in.
    identifiers_lock(i.key for i in parse_customer(identifiers))
    cart = cart_lock(cart)
    now = timezone.now()
    _writable(cart, now)
    resolved = resolve_customer(
        customer=customer, identifiers=identifiers, source=source, actor=actor
    )
    if resolved is None:
        raise ValidationFailed(
            "Say who the customer is.", extra={"identifiers": ["At least one identifier."]}
        )
    # A merge the resolution made may have moved this cart to the survivor meanwhile.
    cart.customer_id = Cart.objects.values_list("customer_id", flat=True).get(pk=cart.pk)
    if cart.customer_id not in (None, resolved.pk):
        raise Conflict(
            "This cart belongs to another customer.",
            code="cart_owned",
            extra={"identifiers": ["These identifiers name another customer than the cart's."]},
        )
    first_time = cart.customer_id is None
    cart.customer = resolved
    cart.save(update_fields=["customer", "status", "closed_at", "last_activity_at"])
    if first_time:
        for line in cart.lines.select_related("variant"):
            _touch(
                cart,
                TouchpointKind.ADD_TO_CART,
                line.variant,
                line.quantity,
                line.added_at,
                event_id=f"cart:{cart.token}:line:{line.pk}",
            )
    return cart


@transaction.atomic
def carts_abandon(*, now=None, idle_days: int | None = None, limit: int = 10_000) -> int:
    """Close open carts idle for ``idle_days`` (``OMNI_CART_ABANDON_DAYS``) as abandoned, a
    batch at a time, set-based. Running it twice closes nothing more."""
    now = now or timezone.now()
    days = idle_days if idle_days is not None else settings.OMNI_CART_ABANDON_DAYS
    cutoff = now - timedelta(days=days)
    ids = list(
        Cart.objects.filter(status=CartStatus.OPEN, last_activity_at__lt=cutoff)
        .order_by("last_activity_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    return Cart.objects.filter(
        pk__in=ids, status=CartStatus.OPEN, last_activity_at__lt=cutoff
    ).update(status=CartStatus.ABANDONED, closed_at=now)
