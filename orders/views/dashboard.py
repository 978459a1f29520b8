"""The way in: ``/store/`` to the current store, the store switcher, and each store's dashboard
(pickups to prepare, awaiting a transfer, ready and overdue; transfers to receive; counts
asked for)."""

from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from inventory.models import CountStatus, StockCount
from inventory.selectors import transfers_to_receive
from orders.forms import StoreSwitchForm
from orders.models import FulfilmentMethod, Order, OrderStatus
from orders.selectors import overdue_before, pickup_counts_for_location

from .base import SESSION_KEY, assigned_stores, forbidden, go, signed_in, store_page

LIST_SIZE = 5


@signed_in
def home(request):
    """``/store/``: the current store's dashboard. The store kept in the session if the user
    still works there; else her only store; else she chooses."""
    stores = assigned_stores(request.user)
    if not stores:
        return forbidden(request, "Your account is not assigned to any store.")
    current = request.session.get(SESSION_KEY)
    chosen = next((s for s in stores if s.code == current), None)
    if chosen is None and len(stores) == 1:
        chosen = stores[0]
    if chosen is None:
        return redirect("store:switch")
    return go("dashboard", chosen)


@signed_in
@require_http_methods(["GET", "POST"])
def switch(request):
    """Choose the store to work in (GET: the choice; POST: switch). A store the user is not
    assigned to is refused (403) and the current one stays."""
    stores = assigned_stores(request.user)
    if not stores:
        return forbidden(request, "Your account is not assigned to any store.")
    if request.method == "POST":
        form = StoreSwitchForm(request.POST)
        code = form.data.get("location", "")
        chosen = next((s for s in stores if s.code == code), None) if form.is_valid() else None
        if chosen is None:
            return forbidden(request, "You are not assigned to this store.", stores)
        request.session[SESSION_KEY] = chosen.code
        messages.success(request, f"You are now working in {chosen.name}.")
        return go("dashboard", chosen)
    current = request.session.get(SESSION_KEY)
    return render(request, "store/switch.html", {"stores": stores, "current_code": current})


@store_page
def dashboard(request, location):
    cutoff = overdue_before()
    counts = pickup_counts_for_location(location)
    listed = Order.objects.filter(
        store=location, fulfilment_method=FulfilmentMethod.PICKUP
    ).select_related("customer")

    def short_list(condition, order_by):
        return list(listed.filter(condition).order_by(*order_by)[:LIST_SIZE])

    transfers = list(transfers_to_receive(location)[:LIST_SIZE])
    context = {
        "counts": counts,
        "to_prepare": short_list(Q(status=OrderStatus.PLACED), ["placed_at", "pk"]),
        "awaiting_transfer": short_list(
            Q(status=OrderStatus.AWAITING_TRANSFER), ["expected_ready_at", "placed_at", "pk"]
        ),
        "ready": short_list(Q(status=OrderStatus.READY, ready_at__gte=cutoff), ["ready_at", "pk"]),
        "overdue": short_list(Q(status=OrderStatus.READY, ready_at__lt=cutoff), ["ready_at", "pk"]),
        "overdue_days": settings.OMNI_PICKUP_OVERDUE_DAYS,
        "transfers": transfers,
        "transfer_count": (
            len(transfers)
            if len(transfers) < LIST_SIZE
            else transfers_to_receive(location).order_by().count()
        ),
        "count_requests": list(
            StockCount.objects.filter(location=location, status=CountStatus.REQUESTED).order_by(
                "requested_at", "pk"
            )
        ),
        "list_size": LIST_SIZE,
        "counts_url": reverse("store:counts", args=[location.code]),
    }
    return render(request, "store/dashboard.html", context)
