"""'Continue the cart she left online': at the counter, a customer's open cart from any
channel becomes a pickup at this store or an in-store sale (``order_place_from_cart``)."""

from django.contrib import messages
from django.shortcuts import get_object_or_404
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.views.decorators.http import require_POST

from omni.exceptions import OmniError
from orders.models import Cart, FulfilmentMethod
from orders.services import order_place_from_cart

from .base import error_text, go, store_page

CHOICES = {FulfilmentMethod.PICKUP, FulfilmentMethod.IN_STORE}


@store_page
@require_POST
def cart_continue(request, location, token):
    cart = get_object_or_404(Cart.objects.select_related("customer"), token=token)
    back = ("customer", location, cart.customer_id) if cart.customer_id else ("customers", location)
    method = request.POST.get("fulfilment_method", "")
    if method not in CHOICES:
        messages.error(request, "Choose pickup at this store or an in-store sale.")
        return go(*back)
    try:
        order = order_place_from_cart(
            cart=cart,
            fulfilment_method=method,
            store=location,
            source=f"user:{request.user.pk}",
            actor=request.user,
        )
    except OmniError as exc:
        messages.error(request, error_text(exc))
        return go(*back)
    if method == FulfilmentMethod.PICKUP:
        messages.success(
            request,
            f"Order {order.number} placed for pickup here"
            + (
                "; part of it comes by transfer, expected "
                f"{date_format(localtime(order.expected_ready_at), 'D j M, H:i')}."
                if order.expected_ready_at
                else "."
            ),
        )
        return go("pickup", location, order.number)
    messages.success(
        request, f"Order {order.number} sold in store: {order.total} {order.currency}."
    )
    return go(*back)
