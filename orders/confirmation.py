"""The customer's order confirmation: a page opened from the link in her confirmation (its
address holds an unguessable token, so it needs no sign-in), with the pickup code in figures and
as a QR code that staff scan at the counter."""

import segno
from django.http import Http404
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from orders.models import FulfilmentMethod, OrderStatus
from orders.selectors import order_detail_queryset


def qr_svg(payload: str) -> str:
    """The QR code of ``payload`` as inline SVG (no image file, works without JavaScript)."""
    return segno.make(payload, error="m").svg_inline(scale=6, border=2, dark="#111")


@never_cache
@require_GET
def order_confirmation(request, token: str):
    order = order_detail_queryset().filter(public_token=token).first()
    if order is None:
        raise Http404("No such order.")
    is_pickup = order.fulfilment_method == FulfilmentMethod.PICKUP
    show_code = is_pickup and order.status in (
        OrderStatus.PLACED,
        OrderStatus.AWAITING_TRANSFER,
        OrderStatus.READY,
    )
    context = {
        "order": order,
        "is_pickup": is_pickup,
        "show_code": show_code,
        "qr": mark_safe(qr_svg(order.qr_payload)) if show_code else "",
    }
    return render(request, "orders/confirmation.html", context)
