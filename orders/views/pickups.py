"""The pickup queue of a store: what to prepare, what waits for a transfer, what is ready and
what is ready for too long; mark ready, and hand over with the customer's code (typed, or the
QR code of her confirmation scanned into the scan box)."""

from itertools import chain
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from omni.exceptions import OmniError
from orders.models import FulfilmentMethod, Order
from orders.selectors import (
    order_by_number,
    order_detail_queryset,
    parse_scan,
    pickup_queue_for_location,
)
from orders.services import order_collect, order_mark_ready

from .base import error_text, forbidden, go, store_page


def _source(request) -> str:
    return f"user:{request.user.pk}"


def _with_addresses(queue, location) -> None:
    """Give each order of the queue ``addresses``: its page, mark ready and hand over. Each is
    reversed once with a stand-in for the number, then filled in per order (reversing them for
    every row was a fifth of the page's time at 500 pickups)."""
    stand_in = "0NUMBER0"
    patterns = {
        name: reverse(f"store:{name}", args=[location.code, stand_in])
        for name in ("pickup", "pickup_ready", "pickup_collect")
    }
    for order in chain(queue.overdue, queue.to_prepare, queue.ready, queue.awaiting_transfer):
        number = quote(order.number)
        order.addresses = {name: url.replace(stand_in, number) for name, url in patterns.items()}


@store_page
def pickup_queue(request, location):
    queue = pickup_queue_for_location(location)
    _with_addresses(queue, location)
    return render(
        request,
        "store/pickups.html",
        {"queue": queue, "overdue_days": settings.OMNI_PICKUP_OVERDUE_DAYS},
    )


def _store_order(request, location, number):
    """The pickup order ``number`` of this store, or the 403 page (another store's order)."""
    order = get_object_or_404(order_detail_queryset(), number=number)
    if order.store_id != location.pk or order.fulfilment_method != FulfilmentMethod.PICKUP:
        return None, forbidden(
            request, f"Order {order.number} is not a pickup at this store.", request.stores
        )
    return order, None


@store_page
def pickup_detail(request, location, number):
    order, refused = _store_order(request, location, number)
    if refused:
        return refused
    return render(request, "store/pickup_detail.html", {"order": order})


@store_page
@require_POST
def pickup_ready(request, location, number):
    order, refused = _store_order(request, location, number)
    if refused:
        return refused
    try:
        order_mark_ready(
            order=order, location=location, source=_source(request), actor=request.user
        )
    except OmniError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Order {order.number} is ready; the customer is told.")
    return go("pickups", location)


def _hand_over(request, location, order: Order, code: str):
    try:
        order_collect(
            order=order, code=code, location=location, source=_source(request), actor=request.user
        )
    except OmniError as exc:
        messages.error(request, error_text(exc))
        return False
    units = sum(line.quantity for line in order.lines.all())
    messages.success(
        request, f"Order {order.number} handed over: {units} item{'s' if units != 1 else ''}."
    )
    return True


@store_page
@require_POST
def pickup_collect(request, location, number):
    order, refused = _store_order(request, location, number)
    if refused:
        return refused
    _hand_over(request, location, order, request.POST.get("code", ""))
    return go("pickups", location)


@store_page
@require_POST
def pickup_scan(request, location):
    """The scan box: the QR code of a confirmation (number and code at once), or an order
    number typed with the code in the second field."""
    number, code = parse_scan(request.POST.get("scan", ""))
    code = code or request.POST.get("code", "").strip()
    if not number:
        messages.error(request, "Scan the customer's QR code, or type the order number.")
        return go("pickups", location)
    order = order_by_number(number, order_detail_queryset())
    if order is None:
        messages.error(request, f"There is no order {number}.")
    elif order.fulfilment_method != FulfilmentMethod.PICKUP:
        messages.error(request, f"Order {order.number} is not a pickup order.")
    elif order.store_id != location.pk:
        messages.error(
            request,
            f"Order {order.number} is for pickup at another store ({order.store.name}), "
            f"not {location.name}.",
        )
    elif not code:
        messages.error(request, f"Enter the pickup code of order {order.number}.")
    else:
        _hand_over(request, location, order, code)
    return go("pickups", location)
