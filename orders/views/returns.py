"""Returns at the counter: any order, from any channel and any store, comes back here; each
line back on this store's shelf or written off, with the refund given."""

from django.contrib import messages
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from omni.exceptions import OmniError
from orders.models import Return, ReturnDisposition
from orders.selectors import order_by_number, order_detail_queryset
from orders.services import ReturnLineInput, return_create

from .base import error_text, go, store_page

RECENT = 20


@store_page
def return_start(request, location):
    """Find the order by its number (from the receipt or the confirmation)."""
    query = request.GET.get("order", "").strip()
    if query:
        order = order_by_number(query.removeprefix("OMNI:").split(":")[0])
        if order is not None:
            return go("return_order", location, order.number)
        messages.error(request, f"There is no order {query}.")
    recent = (
        Return.objects.filter(location=location)
        .select_related("order")
        .prefetch_related("lines")
        .order_by("-created_at")[:RECENT]
    )
    return render(request, "store/returns.html", {"query": query, "recent": recent})


@store_page
@require_http_methods(["GET", "POST"])
def return_order(request, location, number):
    order = order_by_number(number, order_detail_queryset())
    if order is None:
        messages.error(request, f"There is no order {number}.")
        return go("returns", location)
    lines = list(order.lines.all())
    for line in lines:
        line.left = line.quantity - line.returned_quantity
        line.posted_qty = request.POST.get(f"qty-{line.line_number}", "0")
        line.posted_disposition = request.POST.get(
            f"disposition-{line.line_number}", ReturnDisposition.RESTOCK
        )
    errors, status = [], 200
    if request.method == "POST":
        wanted = []
        for line in lines:
            raw = line.posted_qty.strip() or "0"
            if raw == "0":
                continue
            wanted.append(
                ReturnLineInput(
                    line=line.line_number, quantity=raw, disposition=line.posted_disposition
                )
            )
        try:
            record = return_create(
                order=order,
                location=location,
                lines=wanted,
                refund_amount=request.POST.get("refund_amount", "").strip() or None,
                reason=request.POST.get("reason", ""),
                source=f"user:{request.user.pk}",
                actor=request.user,
            )
        except OmniError as exc:
            errors.append(error_text(exc))
            status = 400
        else:
            units = sum(int(r.quantity) for r in wanted)
            messages.success(
                request,
                f"Return {record.number} taken for order {order.number}: {units} "
                f"item{'s' if units != 1 else ''}, refund {record.refund_amount} {order.currency}.",
            )
            return go("returns", location)
    context = {
        "order": order,
        "lines": lines,
        "errors": errors,
        "dispositions": ReturnDisposition.choices,
        "returnable": any(line.left for line in lines),
        "left_to_refund": order.total - order.refunded_total,
    }
    return render(request, "store/return_order.html", context, status=status)
