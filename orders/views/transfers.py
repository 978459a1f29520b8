"""Receiving transfers: the shipped transfers on their way to this store, and a page per
transfer to say what arrived (``inventory.services.transfer_receive``)."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from inventory.models import Transfer, TransferStatus
from inventory.selectors import transfers_to_receive
from inventory.services import transfer_receive
from omni.exceptions import OmniError
from orders.forms import TransferReceiveForm

from .base import add_service_error, forbidden, go, plural, store_page

MAX_LISTED = 100


@store_page
def transfer_list(request, location):
    transfers = list(transfers_to_receive(location)[:MAX_LISTED])
    for transfer in transfers:
        transfer.shipped_units = sum(line.shipped_quantity for line in transfer.lines.all())
    return render(request, "store/transfers.html", {"transfers": transfers})


def _receipt_field(path: str) -> str:
    """``received.<SKU>`` (the service's detail) -> the form field of that line."""
    section, _, sku = path.partition(".")
    return TransferReceiveForm.field_name(sku) if section == "received" else path


@store_page
@require_http_methods(["GET", "POST"])
def transfer_receive_page(request, location, number):
    transfer = get_object_or_404(
        Transfer.objects.select_related("from_location", "to_location"), number=number
    )
    if transfer.to_location_id != location.pk:
        return forbidden(
            request, f"Transfer {transfer.number} is not coming to this store.", request.stores
        )
    lines = list(transfer.lines.select_related("variant__product").order_by("variant__sku"))
    form = TransferReceiveForm(request.POST or None, transfer_lines=lines)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            quantities = form.quantities()
            try:
                transfer_receive(transfer=transfer, quantities=quantities, actor=request.user)
            except OmniError as exc:
                add_service_error(form, exc, _receipt_field)
            else:
                units = sum(quantities.values())
                shipped = sum(line.shipped_quantity for line in lines)
                text = f"Transfer {transfer.number} received: {plural(units, 'unit')}."
                if units < shipped:
                    text += f" {shipped - units} short of what was shipped."
                messages.success(request, text)
                return go("transfers", location)
    context = {
        "transfer": transfer,
        "form": form,
        "can_receive": transfer.status == TransferStatus.SHIPPED,
    }
    return render(request, "store/transfer_receive.html", context, status=status)
