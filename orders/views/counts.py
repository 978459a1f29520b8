"""Stock counts: the counts asked of this store, and entering one.

Staff scan or type each item (SKU or barcode) with the quantity found; the lines so far are a
draft in the session (one per store), so the page survives a reload and scanning the same item
again adds to its line. Submitting sends the whole count through
``inventory.services.stock_count_submit``, which fills the store's open count request if there
is one; until then nothing is written to the database.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from catalog.selectors import variant_by_code
from inventory.models import CountStatus, StockCount
from inventory.services import stock_count_submit
from omni.exceptions import OmniError
from orders.forms import CountLineForm, CountSubmitForm

from .base import add_service_error, forbidden, go, plural, store_page

RECENT = 20


def _draft_key(location) -> str:
    return f"store.count.{location.pk}"


def draft_lines(request, location) -> list[list]:
    """The draft count of this store: ``[[sku, quantity], ...]`` in the order scanned."""
    return [list(line) for line in request.session.get(_draft_key(location), [])]


def _save_draft(request, location, lines) -> None:
    if lines:
        request.session[_draft_key(location)] = lines
    else:
        request.session.pop(_draft_key(location), None)


@store_page
def count_list(request, location):
    counts = (
        StockCount.objects.filter(location=location).select_related("submitted_by").order_by("-pk")
    )
    requested = list(counts.filter(status=CountStatus.REQUESTED))
    recent = list(counts.exclude(status=CountStatus.REQUESTED)[:RECENT])
    return render(
        request,
        "store/counts.html",
        {"requested": requested, "recent": recent, "draft": draft_lines(request, location)},
    )


def _open_request(location):
    return StockCount.objects.filter(location=location, status=CountStatus.REQUESTED).first()


@store_page
@require_http_methods(["GET", "POST"])
def count_new(request, location):
    """A count nobody asked for; with a request open, the count fills that request."""
    return _count_entry(request, location, _open_request(location))


@store_page
@require_http_methods(["GET", "POST"])
def count_detail(request, location, pk):
    count = get_object_or_404(StockCount.objects.select_related("location", "submitted_by"), pk=pk)
    if count.location_id != location.pk:
        return forbidden(request, f"Count #{count.pk} belongs to another store.", request.stores)
    if count.status != CountStatus.REQUESTED:
        if request.method == "POST":
            messages.error(
                request,
                f"Count #{count.pk} is {count.get_status_display().lower()}; nothing was changed.",
            )
            return go("count", location, count.pk)
        lines = count.lines.select_related("variant__product").order_by("variant__sku")
        return render(request, "store/count_detail.html", {"count": count, "lines": lines})
    return _count_entry(request, location, count)


def _count_entry(request, location, count):
    """The entry page: add a line (``add``), remove one (``remove``), or submit (``submit``)."""
    lines = draft_lines(request, location)
    skus = [sku for sku, _ in lines]
    add_form = CountLineForm(prefix="add")
    submit_form = CountSubmitForm(skus=skus, initial={f"qty_{sku}": q for sku, q in lines})
    status = 200
    if request.method == "POST":
        if "add-code" in request.POST:
            add_form = CountLineForm(request.POST, prefix="add")
            if add_form.is_valid():
                code = add_form.cleaned_data["code"]
                variant = variant_by_code(code)
                if variant is None:
                    add_form.add_error("code", f"No item with SKU or barcode {code}.")
                else:
                    quantity = add_form.cleaned_data["quantity"]
                    line = next((line for line in lines if line[0] == variant.sku), None)
                    if line is None:
                        lines.append([variant.sku, quantity])
                        total = quantity
                    else:
                        line[1] += quantity
                        total = line[1]
                    _save_draft(request, location, lines)
                    messages.success(
                        request, f"{variant.sku} ({variant.product.title}): {total} counted."
                    )
                    return _back(location, count)
            status = 400
        else:
            submit_form = CountSubmitForm(request.POST, skus=skus)
            valid = submit_form.is_valid()
            if "remove" in request.POST:
                # Keep what was typed in the other lines when it reads; else the draft as it was.
                sku = request.POST["remove"]
                kept = (
                    [[line["sku"], line["quantity"]] for line in submit_form.lines()]
                    if valid
                    else lines
                )
                _save_draft(request, location, [line for line in kept if line[0] != sku])
                messages.success(request, f"{sku} removed from the count.")
                return _back(location, count)
            if not valid:
                status = 400
            elif "submit" not in request.POST:  # "save" (Enter in a quantity): keep the edits
                draft = [[line["sku"], line["quantity"]] for line in submit_form.lines()]
                _save_draft(request, location, draft)
                messages.success(request, "Quantities saved; the count is not submitted yet.")
                return _back(location, count)
            else:
                draft = submit_form.lines()
                _save_draft(request, location, [[line["sku"], line["quantity"]] for line in draft])
                try:
                    submitted = stock_count_submit(
                        location=location,
                        counted_at=submit_form.cleaned_data["counted_at"] or timezone.now(),
                        lines=draft,
                        source=f"store:{location.code}",
                        actor=request.user,
                    )
                except OmniError as exc:
                    add_service_error(submit_form, exc, _field_of(skus))
                    status = 400
                else:
                    _save_draft(request, location, [])
                    units = sum(line["quantity"] for line in draft)
                    messages.success(
                        request,
                        f"Count #{submitted.pk} submitted: {plural(len(draft), 'item')}, "
                        f"{plural(units, 'unit')}. "
                        "It will be compared with the stock ledger at the next reconciliation.",
                    )
                    return go("counts", location)
    context = {"count": count, "add_form": add_form, "submit_form": submit_form}
    return render(request, "store/count_entry.html", context, status=status)


def _back(location, count):
    return go("count", location, count.pk) if count else go("count_new", location)


def _field_of(skus):
    """The service reports count lines by index (``lines.3.quantity``): the field of line 3."""

    def field_for(path: str) -> str:
        parts = path.split(".")
        if parts[0] == "lines" and len(parts) > 1 and parts[1].isdigit():
            index = int(parts[1])
            if index < len(skus):
                return CountSubmitForm.field_name(skus[index])
        return path

    return field_for
