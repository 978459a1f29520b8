"""What the order services share: locks, numbers and codes, prices, lines and the customer."""

import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import ChannelListing, Variant
from customers.identifiers import Identifier, identifiers_parse
from customers.models import Customer, Touchpoint
from customers.services.common import customer_lock
from customers.services.resolution import customer_resolve
from customers.services.touchpoints import touchpoint_record
from inventory.services.common import positive_quantity, variant_of, variants_by_sku
from omni.exceptions import Conflict, NotFound, OmniError, ValidationFailed
from omni.models import Channel
from orders.models import Order

SOURCE = "orders"
MAX_LINES = 100
# Letters and digits a customer reads out without confusion (no 0/O, 1/I/L, U).
_NUMBER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
MONEY_LIMIT = Decimal("1e10")


@dataclass
class LineInput:
    """One line an order or a cart is asked for: a SKU (or variant) and a quantity; a POS sale
    may give the price the till charged."""

    sku: object
    quantity: object
    unit_price: object = None


@dataclass
class PricedLine:
    variant: Variant
    quantity: int
    unit_price: Decimal
    title: str

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


def new_number(prefix: str) -> str:
    """``O-7KQ2-M9XD``: short enough to read over the counter, unguessable, unique by the
    database (see ``unique_number``)."""
    body = "".join(secrets.choice(_NUMBER_ALPHABET) for _ in range(8))
    return f"{prefix}-{body[:4]}-{body[4:]}"


def new_pickup_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def new_token() -> str:
    return secrets.token_hex(16)


def save_with_unique_number(instance, prefix: str, attempts: int = 5):
    """Insert ``instance`` with a fresh random number; on the rare clash, draw again."""
    for _attempt in range(attempts):
        instance.number = new_number(prefix)
        try:
            with transaction.atomic():
                instance.save(force_insert=True)
            return instance
        except IntegrityError as exc:
            if not _clash_on(exc, instance, "number"):
                raise
            instance.pk = None
    raise Conflict("Could not draw a free number; try again.")


def _clash_on(exc: IntegrityError, instance, field: str) -> bool:
    """Whether ``exc`` is the unique constraint of ``field`` refusing the row (by the name
    PostgreSQL reports; another value that merely contains the word does not count)."""
    diag = getattr(exc.__cause__, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    if constraint is None:  # not PostgreSQL: the message names the column
        return f".{field}" in str(exc)
    column = instance._meta.get_field(field).column
    return constraint.startswith(f"{instance._meta.db_table}_{column}_")


def require_sales_channel(channel: Channel, field: str = "channel") -> None:
    if channel is None or not channel.is_sales or not channel.is_active:
        code = getattr(channel, "code", None)
        raise ValidationFailed(
            f"Orders and carts belong to an active sales channel; {code} is not one.",
            code="not_a_sales_channel",
            extra={field: [f"{code} is not an active sales channel."]},
        )


def money(value, field: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationFailed(
            f"{field} must be an amount, not {value!r}.", extra={field: ["An amount."]}
        ) from None
    if not amount.is_finite() or amount < 0 or amount >= MONEY_LIMIT:
        raise ValidationFailed(
            f"{field} must be an amount from 0 to {MONEY_LIMIT:,.0f}.",
            extra={field: ["A positive amount."]},
        )
    return amount.quantize(Decimal("0.01"))


def price_lines(
    *, channel: Channel, lines: list[LineInput], allow_price: bool = False, merge: bool = True
) -> tuple[list[PricedLine], str]:
    """The lines at the channel's listing price (or, for a till, the price given), checked all
    at once: unknown SKUs, inactive variants, lines not sold on the channel and bad quantities
    are reported together by line index. Repeated SKUs are added up when ``merge``."""
    if not lines:
        raise ValidationFailed("An order needs at least one line.", extra={"lines": ["Empty."]})
    if len(lines) > MAX_LINES:
        raise ValidationFailed(
            f"At most {MAX_LINES} lines.", extra={"lines": [f"At most {MAX_LINES} lines."]}
        )
    variants = variants_by_sku((line.sku for line in lines), related=["product"])
    products = {variant.pk: variant.product for variant in variants.values()}
    listings = {
        listing.variant_id: listing
        for listing in ChannelListing.objects.filter(
            channel=channel, variant__in=[v.pk for v in variants.values()]
        )
    }
    now = timezone.now()
    errors, priced, index_of = {}, [], {}
    for index, line in enumerate(lines):
        try:
            variant = variant_of(variants, line.sku)
            quantity = positive_quantity(line.quantity)
            listing = listings.get(variant.pk)
            given = line.unit_price if allow_price else None
            if not (variant.is_active and products[variant.pk].is_active):
                raise ValidationFailed(
                    f"{variant.sku} is not sold any more.",
                    extra={"sku": [f"{variant.sku} is not sold any more."]},
                )
            if given is None and (listing is None or not listing.is_available_at(now)):
                raise ValidationFailed(
                    f"{variant.sku} is not sold on {channel.code}.",
                    code="not_listed",
                    extra={"sku": [f"{variant.sku} is not sold on {channel.code}."]},
                )
            price = money(given, "unit_price") if given is not None else listing.price
        except OmniError as exc:
            errors[str(index)] = exc.extra or {"line": [exc.message]}
            continue
        product = products[variant.pk]
        title = (listing.title if listing and listing.title else product.title)[:250]
        if variant.option_values:
            title = f"{title} ({variant.options_label})"[:300]
        if merge and variant.pk in index_of:
            priced[index_of[variant.pk]].quantity += quantity
            continue
        index_of[variant.pk] = len(priced)
        priced.append(PricedLine(variant, quantity, price, title))
    if errors:
        first = next(iter(errors.values()))
        message = next(iter(first.values()))[0]
        raise ValidationFailed(
            f"Some lines cannot be ordered: {message}"
            + (f" ({len(errors)} lines.)" if len(errors) > 1 else ""),
            extra={"lines": errors},
        )
    currencies = {
        p.variant.pk: (
            listings[p.variant.pk].currency if p.variant.pk in listings else channel.currency
        )
        for p in priced
    }
    currency = currencies[priced[0].variant.pk] or channel.currency
    mixed = {
        str(index): {"currency": [f"Priced in {currencies[v.pk]}, not {currency}."]}
        for index, v in _line_variants(lines, variants)
        if v.pk in currencies and (currencies[v.pk] or channel.currency) != currency
    }
    if mixed:
        raise ValidationFailed(
            f"The lines are priced in different currencies on {channel.code}; an order has one.",
            code="mixed_currencies",
            extra={"lines": mixed},
        )
    return priced, currency


def _line_variants(lines, variants):
    for index, line in enumerate(lines):
        try:
            yield index, variant_of(variants, line.sku)
        except OmniError:
            continue


def parse_customer(identifiers) -> list[Identifier]:
    """Identifiers from input (see ``customers.identifiers.parse_identifiers``), refused as a
    whole when one is invalid."""
    if not identifiers:
        return []
    if all(isinstance(i, Identifier) for i in identifiers):
        # Built by a caller, maybe from raw input: stored only in their normalised form, so
        # ``Camille@Example.com`` finds the customer ``camille@example.com`` names.
        identifiers = [
            {"kind": i.kind, "value": i.value, "verified": i.verified} for i in identifiers
        ]
    return identifiers_parse(identifiers)


def resolve_customer(
    *, customer: Customer | None, identifiers, source: str, actor=None
) -> Customer | None:
    """The customer an order or a cart belongs to: the one given, the one the identifiers
    name (created or merged through the one resolution service), or nobody."""
    parsed = parse_customer(identifiers)
    if not parsed and customer is None:
        return None
    if customer is not None and customer.erased_at is not None:
        raise Conflict(
            f"Customer {customer.pk} was erased.",
            code="customer_erased",
            extra={"customer": [f"Customer {customer.pk} was erased."]},
        )
    resolved, _resolution = customer_resolve(
        identifiers=parsed,
        customer_id=customer.pk if customer is not None else None,
        source=source,
        actor=actor,
    )
    return resolved


def lock_with_customer(model, pk, *related):
    """Lock a row of an order or a cart for a change. Its customer is locked first (the order
    the customer services lock in: customer, then her rows), so a merge moving her orders and
    a hand-over writing her timeline never wait on each other in opposite orders."""
    for _attempt in range(3):
        try:
            customer_id = model.objects.values_list("customer_id", flat=True).get(pk=pk)
        except model.DoesNotExist:
            raise NotFound(f"No such {model._meta.verbose_name}.") from None
        if customer_id is not None:
            customer_lock([customer_id])
        locked = (
            model.objects.select_for_update(of=("self",))
            .select_related("channel", "customer", *related)
            .get(pk=pk)
        )
        if locked.customer_id == customer_id:
            return locked
    raise Conflict("The customer changed while this was being updated; try again.")


def order_lock(order: Order) -> Order:
    return lock_with_customer(Order, order.pk, "store")


def order_row_lock(order_pk: int) -> Order:
    """Lock an order's row alone, for the transfer hooks: inventory calls them holding stock
    rows, and taking the customer after those would invert the customer-then-stock order
    every placement follows (a deadlock). They write neither the customer nor her timeline;
    a merge moving the order waits for this lock, which never waits on the merge."""
    return (
        Order.objects.select_for_update(of=("self",))
        .select_related("channel", "store")
        .get(pk=order_pk)
    )


def timeline(order: Order, kind: str, event: str, *, location=None, properties=None, at=None):
    """Put an order event on its customer's timeline (nothing for an anonymous order, nor for
    a customer who was erased: her timeline is gone and must not grow back)."""
    if order.customer_id is None or order.customer.erased_at is not None:
        return
    touchpoint_record(
        customer=order.customer,
        channel=order.channel,
        kind=kind,
        source=SOURCE,
        event_id=f"{order.number}:{event}",
        occurred_at=at,
        location=location,
        properties={"order": order.number, **(properties or {})},
    )


def purchase_recorded(order: Order) -> dict | None:
    """The properties of the purchase event placing ``order`` put on its customer's timeline,
    or None when none was (an anonymous order, an erased customer)."""
    if order.customer_id is None:
        return None
    return (
        Touchpoint.objects.filter(source=SOURCE, event_id=f"{order.number}:placed")
        .values_list("properties", flat=True)
        .first()
    )


def actor_or_none(actor):
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None
