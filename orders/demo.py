"""Demo orders for ``load_demo``: a day of omnichannel trade around the Paris Rivoli store.

- Orders from every sales channel: shipped from the web shop (one shipped, one to ship, one
  shipped and partly returned at the Paris counter), a marketplace order to ship with the
  marketplace's own reference, a social shop order shipped, and pickups from the web shop and
  the app.
- The Paris pickup queue: three pickups to prepare, two ready, one ready for five days (overdue),
  one waiting for a transfer from the warehouse; one pickup already collected; an app pickup in
  Lyon that the customer cancelled.
- Till sales in the three stores, with and without a known customer.
- Camille's open web cart (the demo customer of ``customers.demo``), which the counter can turn
  into a pickup or a sale ("continue the cart she left online").
- ``store``, a member of the store staff (not admin staff) assigned to Paris Rivoli; she marks
  the pickups ready, hands them over and takes the return. ``ensure_store_staff`` gives her a
  password.

Everything goes through ``orders.services`` as the web shop, the marketplace, the tills and the
store pages would; the only direct write is moving the overdue pickup back in time (a queryset
update of its times after the services ran, see ``_move_back``), since a service stamps the
time it runs.

The orders go to the demo's regular customers (lifetime revenue of 200 or more, a purchase in
the last 60 days, web shoppers), so the segments the customers step counted keep their members;
the marketplace order has no customer (the marketplace keeps its buyers' identities).

The demo runs once: nothing is added when orders exist already.
"""

from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from catalog.models import ChannelListing, Variant
from customers.models import Customer, CustomerChannelStat
from inventory.demo import LYON, MARSEILLE, PARIS, WAREHOUSE
from inventory.models import Location, StockLevel
from omni.models import Channel
from orders.models import (
    Cart,
    CartStatus,
    FulfilmentMethod,
    Order,
    OrderStatus,
    OrderStatusChange,
    Return,
    StaffAssignment,
)
from orders.services import (
    LineInput,
    ReturnLineInput,
    cart_create,
    cart_line_add,
    order_cancel,
    order_collect,
    order_mark_ready,
    order_place,
    order_ship,
    pos_sale_record,
    return_create,
)

SOURCE = "demo"
DEMO_STORE = PARIS
STAFF_USERNAME = "store"
CAMILLE = "camille.laurent@example.com"
HUGO = "hugo.martin@example.com"
MARKETPLACE_REFERENCE = "MKP-402-7781234"
OVERDUE_DAYS = 5
# Regular customers: what the demo's "Big spenders" segment asks, and a purchase within the
# 60 days its "Lapsed buyers" segment looks at.
REGULAR_REVENUE = Decimal("200")
REGULAR_WITHIN_DAYS = 60
SALES_CHANNELS = ("web", "app", "marketplace", "social-shop", "store")
# What the demo orders take from (shipped from the warehouse, picked up and sold in Paris, sold
# or reserved in Lyon and Marseille): the least a variant must hold there to be used.
ONLINE_AND_PARIS = {WAREHOUSE: 20, PARIS: 5}
LOCATIONS = (WAREHOUSE, PARIS, LYON, MARSEILLE)


def _staff_user(store: Location):
    """The store staff member of the demo store (no admin access; a password is set by
    ``ensure_store_staff``)."""
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=STAFF_USERNAME,
        defaults={
            "first_name": "Sam",
            "last_name": "Rivoli",
            "email": "store@example.com",
            "is_staff": False,
        },
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    StaffAssignment.objects.get_or_create(user=user, location=store)
    return user


def _regulars() -> list[Customer]:
    now = timezone.now()
    web = Channel.objects.filter(code="web").first()
    if web is None:
        return []
    return list(
        Customer.objects.filter(
            erased_at__isnull=True,
            lifetime_revenue__gte=REGULAR_REVENUE,
            last_purchase_at__gte=now - timedelta(days=REGULAR_WITHIN_DAYS),
        )
        .filter(Exists(CustomerChannelStat.objects.filter(customer_id=OuterRef("pk"), channel=web)))
        .exclude(identities__kind="email", identities__value__in=[CAMILLE, HUGO])
        .order_by("pk")[:8]
    )


def _variants(locations: dict[str, Location], minimums: dict[str, int], count: int) -> list:
    """``count`` active variants on sale on every sales channel and held, with nothing
    reserved, at ``minimums`` units or more at each of those locations: the demo sells none
    of them out and adds no stock row."""
    now = timezone.now()
    ids = None
    for code, minimum in minimums.items():
        held = set(
            StockLevel.objects.filter(
                location=locations[code], on_hand__gte=minimum, reserved=0
            ).values_list("variant_id", flat=True)
        )
        ids = held if ids is None else ids & held
    listed = {}
    for listing in ChannelListing.objects.filter(
        variant_id__in=ids, channel__code__in=SALES_CHANNELS, variant__is_active=True
    ).select_related("channel"):
        if listing.is_available_at(now):
            listed.setdefault(listing.variant_id, set()).add(listing.channel.code)
    chosen = sorted(pk for pk, codes in listed.items() if len(codes) == len(SALES_CHANNELS))
    return list(Variant.objects.filter(pk__in=chosen[:count]).order_by("pk"))


def _transfer_variant(locations: dict[str, Location]) -> Variant | None:
    """A variant on sale on the web shop that Paris cannot give (none on its shelf beyond the
    safety stock) and the warehouse holds plenty of: a pickup of it waits for a transfer."""
    now = timezone.now()
    paris = locations[PARIS]
    sellable_in_paris = StockLevel.objects.filter(
        location=paris, on_hand__gt=paris.safety_stock
    ).values("variant_id")
    candidates = (
        StockLevel.objects.filter(location=locations[WAREHOUSE], on_hand__gte=30, reserved=0)
        .exclude(variant_id__in=sellable_in_paris)
        .order_by("variant_id")
        .values_list("variant_id", flat=True)[:50]
    )
    listings = ChannelListing.objects.filter(
        variant_id__in=list(candidates), channel__code="web", variant__is_active=True
    ).select_related("variant")
    for listing in sorted(listings, key=lambda listing: listing.variant_id):
        if listing.is_available_at(now):
            return listing.variant
    return None


def _move_back(order: Order, *, ready_days_ago: int) -> None:
    """Make a ready pickup look ready for ``ready_days_ago`` days (placed two hours before):
    the services stamp the current time, so the demo moves its times back, in the order and
    in its status history."""
    ready_at = timezone.now() - timedelta(days=ready_days_ago)
    placed_at = ready_at - timedelta(hours=2)
    Order.objects.filter(pk=order.pk).update(placed_at=placed_at, ready_at=ready_at)
    history = OrderStatusChange.objects.filter(order=order)
    history.filter(to_status=OrderStatus.READY).update(at=ready_at)
    history.exclude(to_status=OrderStatus.READY).update(at=placed_at)


def _address(customer: Customer, street: str) -> str:
    return f"{customer.first_name} {customer.last_name}\n{street}\n{customer.city or 'Paris'}"


@transaction.atomic
def generate_orders(*, progress=None) -> dict:
    """Create the demo orders (see the module docstring), once. Returns what exists."""
    if Order.objects.exists():
        return {"skipped": True}
    locations = {loc.code: loc for loc in Location.objects.filter(code__in=LOCATIONS)}
    channels = {c.code: c for c in Channel.objects.filter(code__in=SALES_CHANNELS)}
    if len(locations) < len(LOCATIONS) or len(channels) < len(SALES_CHANNELS):
        return {"skipped": True}
    regulars = _regulars()
    v = _variants(locations, ONLINE_AND_PARIS, 14)
    in_lyon = _variants(locations, {LYON: 3}, 2)
    in_marseille = _variants(locations, {MARSEILLE: 3}, 1)
    transfer_variant = _transfer_variant(locations)
    if len(regulars) < 4 or len(v) < 14 or len(in_lyon) < 2 or not in_marseille:
        return {"skipped": True}
    if transfer_variant is None:
        return {"skipped": True}

    paris, lyon, marseille = locations[PARIS], locations[LYON], locations[MARSEILLE]
    web, app = channels["web"], channels["app"]
    staff = _staff_user(paris)
    at_counter = {"source": f"user:{staff.pk}", "actor": staff}
    r = [regulars[i % len(regulars)] for i in range(8)]

    def place(channel, customer, lines, method, **extra):
        if customer is not None:
            extra.setdefault("contact_name", f"{customer.first_name} {customer.last_name}")
        return order_place(
            channel=channel,
            customer=customer,
            lines=[LineInput(variant, quantity) for variant, quantity in lines],
            fulfilment_method=method,
            source=SOURCE,
            **extra,
        )

    def pickup(channel, customer, lines, store=paris):
        return place(channel, customer, lines, FulfilmentMethod.PICKUP, store=store)

    def ship(channel, customer, lines, street, **extra):
        return place(
            channel,
            customer,
            lines,
            FulfilmentMethod.SHIP,
            shipping_address=_address(customer, street) if customer else street,
            **extra,
        )

    # Shipped from the warehouse: the web shop, the marketplace, the social shop.
    shipped = ship(web, r[0], [(v[0], 1), (v[1], 1)], "14 Rue des Lilas")
    order_ship(order=shipped, source=SOURCE, carrier="Colissimo", tracking_number="6A12345678901")
    ship(web, r[1], [(v[2], 2)], "3 Avenue Jean Jaurès")
    ship(
        channels["marketplace"],
        None,
        [(v[3], 1)],
        "Marketplace buyer\n27 Boulevard Victor Hugo\nNice",
        external_reference=MARKETPLACE_REFERENCE,
        contact_name="Marketplace buyer",
    )
    social = ship(channels["social-shop"], r[2], [(v[4], 1)], "8 Place Bellecour")
    order_ship(order=social, source=SOURCE, carrier="Chronopost", tracking_number="XY987654321FR")

    # The Paris pickup queue.
    for channel, customer, lines in [
        (web, r[3], [(v[5], 1), (v[6], 1)]),
        (app, r[4], [(v[7], 1)]),
        (web, r[5], [(v[8], 2)]),
    ]:
        pickup(channel, customer, lines)  # placed: to prepare
    for channel, customer, lines in [(web, r[6], [(v[9], 1)]), (app, r[7], [(v[10], 1)])]:
        order_mark_ready(order=pickup(channel, customer, lines), location=paris, **at_counter)
    overdue = pickup(web, r[0], [(v[11], 1)])
    order_mark_ready(order=overdue, location=paris, **at_counter)
    _move_back(overdue, ready_days_ago=OVERDUE_DAYS)
    awaiting = pickup(web, r[1], [(transfer_variant, 1), (v[12], 1)])
    collected = pickup(app, r[2], [(v[13], 1)])
    order_mark_ready(order=collected, location=paris, **at_counter)
    order_collect(order=collected, code=collected.pickup_code, location=paris, **at_counter)
    cancelled = pickup(app, r[3], [(in_lyon[0], 1)], store=lyon)
    order_cancel(order=cancelled, source=SOURCE, reason="The customer changed her mind.")

    # Till sales in the stores, with and without a known customer.
    pos_sale_record(
        store=paris, lines=[LineInput(v[13], 1)], customer=r[4], receipt="PAR-D-0001", **at_counter
    )
    pos_sale_record(
        store=paris,
        lines=[LineInput(v[0], 1), LineInput(v[5], 2)],
        receipt="PAR-D-0002",
        **at_counter,
    )
    pos_sale_record(
        store=lyon, lines=[LineInput(in_lyon[1], 1)], receipt="LYO-D-0001", source=SOURCE
    )
    pos_sale_record(
        store=marseille,
        lines=[LineInput(in_marseille[0], 1)],
        customer=r[5],
        receipt="MRS-D-0001",
        source=SOURCE,
    )

    # The web order shipped earlier: one item comes back at the Paris counter.
    return_create(
        order=shipped,
        location=paris,
        lines=[ReturnLineInput(line="1", quantity=1)],
        reason="Too small.",
        **at_counter,
    )

    # Camille's web cart, left open.
    camille = Customer.objects.filter(identities__kind="email", identities__value=CAMILLE).first()
    cart = cart_create(channel=web, customer=camille, source=SOURCE, lines=[LineInput(v[6], 1)])
    cart_line_add(cart=cart, sku=v[9].sku, quantity=2, source=SOURCE)

    waiting = Order.objects.filter(
        store=paris,
        fulfilment_method=FulfilmentMethod.PICKUP,
        status__in=[OrderStatus.PLACED, OrderStatus.AWAITING_TRANSFER, OrderStatus.READY],
    )
    counts = {"orders": Order.objects.count(), "pickups_waiting": waiting.count()}
    if progress:
        progress("orders", counts["orders"])
        progress(f"pickups waiting at {paris.code}", counts["pickups_waiting"])
    return {
        **counts,
        "awaiting_transfer": awaiting.number,
        "returns": Return.objects.count(),
        "open_carts": Cart.objects.filter(status=CartStatus.OPEN).count(),
        "store": paris.code,
        "staff": staff.get_username(),
    }
