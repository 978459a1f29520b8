"""Reads of orders and carts that more than one caller needs (store pages, API, admin)."""

import re
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from orders.models import (
    Cart,
    CartLine,
    CartStatus,
    Fulfilment,
    FulfilmentMethod,
    Order,
    OrderLine,
    OrderStatus,
    OrderStatusChange,
    Return,
    ReturnLine,
)

_SCAN = re.compile(r"^\s*OMNI:(?P<number>[A-Z0-9-]+):(?P<code>\d{6})\s*$", re.IGNORECASE)
QUEUE_STATUSES = (OrderStatus.PLACED, OrderStatus.AWAITING_TRANSFER, OrderStatus.READY)


def parse_scan(text: str) -> tuple[str, str]:
    """``(order number, pickup code)`` from what was scanned or typed at the counter: the QR
    code's ``OMNI:<number>:<code>``, or an order number alone (code ``""``)."""
    text = (text or "").strip()
    match = _SCAN.match(text)
    if match:
        return match["number"].upper(), match["code"]
    return text.upper(), ""


def order_by_number(number: str, queryset: QuerySet | None = None) -> Order | None:
    queryset = queryset if queryset is not None else Order.objects.all()
    return queryset.filter(number=(number or "").strip().upper()).first()


def overdue_before(now=None):
    now = now or timezone.now()
    return now - timedelta(days=settings.OMNI_PICKUP_OVERDUE_DAYS)


@dataclass
class PickupQueue:
    to_prepare: list = field(default_factory=list)
    awaiting_transfer: list = field(default_factory=list)
    ready: list = field(default_factory=list)
    overdue: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            len(self.to_prepare) + len(self.awaiting_transfer) + len(self.ready) + len(self.overdue)
        )


def pickup_queue_for_location(location, now=None) -> PickupQueue:
    """A store's open pickups, oldest first, sorted into what to prepare, what waits for a
    transfer, what is ready and what is ready for too long. Two queries (orders with their
    customer, and their lines) whatever the size of the queue."""
    cutoff = overdue_before(now)
    orders = (
        Order.objects.filter(
            store=location, fulfilment_method=FulfilmentMethod.PICKUP, status__in=QUEUE_STATUSES
        )
        .select_related("customer", "channel")
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=OrderLine.objects.only(
                    "order_id", "line_number", "sku", "title", "quantity", "transfer_quantity"
                ).order_by("line_number"),
            )
        )
        .order_by("placed_at", "pk")
    )
    queue = PickupQueue()
    for order in orders:
        if order.status == OrderStatus.PLACED:
            queue.to_prepare.append(order)
        elif order.status == OrderStatus.AWAITING_TRANSFER:
            queue.awaiting_transfer.append(order)
        elif order.ready_at is not None and order.ready_at < cutoff:
            queue.overdue.append(order)
        else:
            queue.ready.append(order)
    return queue


def pickup_counts_for_location(location, now=None) -> dict[str, int]:
    """The dashboard's pickup figures, in one query."""
    cutoff = overdue_before(now)
    ready = Q(status=OrderStatus.READY)
    return Order.objects.filter(
        store=location, fulfilment_method=FulfilmentMethod.PICKUP, status__in=QUEUE_STATUSES
    ).aggregate(
        to_prepare=Count("pk", filter=Q(status=OrderStatus.PLACED)),
        awaiting_transfer=Count("pk", filter=Q(status=OrderStatus.AWAITING_TRANSFER)),
        ready=Count("pk", filter=ready & Q(ready_at__gte=cutoff)),
        overdue=Count("pk", filter=ready & Q(ready_at__lt=cutoff)),
        needs_attention=Count("pk", filter=Q(needs_attention=True)),
    )


def orders_for_customer(customer_id: int, limit: int = 20) -> list[Order]:
    """A customer's latest orders from every channel, with their lines."""
    return list(
        Order.objects.filter(customer_id=customer_id)
        .select_related("channel", "store")
        .prefetch_related(Prefetch("lines", queryset=OrderLine.objects.order_by("line_number")))
        .order_by("-placed_at", "-pk")[:limit]
    )


def open_carts_for_customer(customer_id: int, limit: int = 10) -> list[Cart]:
    """The customer's open carts on any channel, newest activity first, with their lines."""
    return list(
        Cart.objects.filter(customer_id=customer_id, status=CartStatus.OPEN)
        .select_related("channel")
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=CartLine.objects.select_related("variant__product").order_by("added_at"),
            )
        )
        .order_by("-last_activity_at", "-pk")[:limit]
    )


def return_detail_queryset() -> QuerySet:
    """Returns with their order, location, who took them and their lines."""
    return Return.objects.select_related("order", "location", "actor").prefetch_related(
        Prefetch(
            "lines",
            queryset=ReturnLine.objects.select_related("order_line").order_by(
                "order_line__line_number", "pk"
            ),
        )
    )


DETAIL_RELATIONS = frozenset(("lines", "history", "fulfilments", "returns"))


def order_detail_in_hand(order: Order) -> bool:
    """Whether ``order`` already holds what ``order_detail_queryset`` reads (an order just
    placed by ``order_place``), so that its page needs no query."""
    return set(getattr(order, "_prefetched_objects_cache", ())) >= DETAIL_RELATIONS


def order_detail_queryset() -> QuerySet:
    """Orders with everything an order's page shows (the API, the store pages, the customer's
    confirmation): lines, status history, fulfilments and returns, in a fixed number of
    queries."""
    return Order.objects.select_related("channel", "store", "customer", "cart").prefetch_related(
        Prefetch(
            "lines",
            queryset=OrderLine.objects.select_related("transfer").order_by("line_number"),
        ),
        Prefetch(
            "history",
            queryset=OrderStatusChange.objects.select_related("actor").order_by("at", "pk"),
        ),
        Prefetch(
            "fulfilments",
            queryset=Fulfilment.objects.select_related("location", "actor").order_by(
                "created_at", "pk"
            ),
        ),
        Prefetch("returns", queryset=return_detail_queryset().order_by("-created_at", "-pk")),
    )
