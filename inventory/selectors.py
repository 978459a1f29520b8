"""Inventory reads that several callers need (API, admin, store pages, campaigns)."""

from django.db.models import Exists, F, FilteredRelation, Q, Subquery
from django.db.models.functions import Coalesce, Greatest

from catalog.models import Variant
from inventory.models import (
    Location,
    StockLevel,
    Transfer,
    TransferStatus,
)
from inventory.services.availability import availability_state
from inventory.services.transfers import in_transit
from omni.db import PreparedQuery
from omni.formats import api_datetime
from omni.models import SALES_KINDS, Channel

MAX_BATCH_SKUS = 500
AVAILABILITY_FIELDS = ("sku", "channel_ok", "av__quantity", "av__is_low_stock", "av__updated_at")


def _with_availability(queryset, channel_code, channel_code_again):
    """Each variant with its availability row on the channel (if any) and whether the channel
    is a sales channel, in one query (the channel's code is given twice: once per use)."""
    return queryset.annotate(
        av=FilteredRelation(
            "availability",
            condition=Q(
                availability__channel_id=Subquery(
                    Channel.objects.filter(code=channel_code).values("pk")[:1]
                )
            ),
        ),
        channel_ok=Exists(Channel.objects.filter(code=channel_code_again, kind__in=SALES_KINDS)),
    ).values_list(*AVAILABILITY_FIELDS)


_availability_query = PreparedQuery(
    lambda sku, code, code_again: _with_availability(
        Variant.objects.filter(sku=sku), code, code_again
    )
)


def _availability_dict(row, channel_code: str) -> dict:
    sku, _ok, quantity, is_low, updated_at = row
    quantity = quantity or 0
    is_low = bool(is_low)
    return {
        "sku": sku,
        "channel": channel_code,
        "quantity": quantity,
        "is_low_stock": is_low,
        "state": availability_state(quantity, is_low),
        "updated_at": api_datetime(updated_at) if updated_at else None,
    }


class UnknownChannel(Exception):
    pass


def availability_for_channel(sku: str, channel_code: str) -> dict | None:
    """What ``channel_code`` may promise of ``sku``, in wire format; one prepared query.
    None if the SKU is unknown; raises UnknownChannel if the channel is not a sales channel."""
    rows = _availability_query.rows(sku, channel_code, channel_code)
    if not rows:
        if not Channel.objects.filter(code=channel_code, kind__in=SALES_KINDS).exists():
            raise UnknownChannel(channel_code)
        return None
    if not rows[0][1]:
        raise UnknownChannel(channel_code)
    return _availability_dict(rows[0], channel_code)


def availability_batch(skus: list[str], channel_code: str) -> tuple[list[dict], list[str]]:
    """Availability of up to 500 SKUs on a channel in one query, in the order asked;
    returns ``(results, unknown SKUs)``."""
    rows = list(
        _with_availability(Variant.objects.filter(sku__in=skus), channel_code, channel_code)
    )
    if (
        rows
        and not rows[0][1]
        or (
            not rows
            and not Channel.objects.filter(code=channel_code, kind__in=SALES_KINDS).exists()
        )
    ):
        raise UnknownChannel(channel_code)
    found = {row[0]: _availability_dict(row, channel_code) for row in rows}
    results, unknown, seen = [], [], set()
    for sku in skus:
        if sku in seen:
            continue
        seen.add(sku)
        if sku in found:
            results.append(found[sku])
        else:
            unknown.append(sku)
    return results, unknown


def stock_for_variant(variant: Variant) -> list[dict]:
    """Every location's stock of ``variant``: on hand, reserved, safety, sellable, incoming."""
    rows = (
        StockLevel.objects.filter(variant=variant)
        .select_related("location")
        .annotate(
            safety=Coalesce(F("safety_stock"), F("location__safety_stock")),
            sellable=Greatest(
                F("on_hand")
                - F("reserved")
                - Coalesce(F("safety_stock"), F("location__safety_stock")),
                0,
            ),
        )
        .order_by("location__code")
    )
    incoming = in_transit(variant_ids=[variant.pk])
    result = [
        {
            "location": row.location.code,
            "location_name": row.location.name,
            "kind": row.location.kind,
            "on_hand": row.on_hand,
            "reserved": row.reserved,
            "safety_stock": row.safety,
            "available": row.sellable,
            "in_transit": incoming.get((row.location_id, variant.pk), 0),
            "updated_at": api_datetime(row.updated_at),
        }
        for row in rows
    ]
    # Units on their way to a location that never held the item (it has no stock row yet).
    listed = {row.location_id for row in rows}
    awaited = {loc for (loc, _variant), units in incoming.items() if units and loc not in listed}
    if awaited:
        result.extend(
            {
                "location": location.code,
                "location_name": location.name,
                "kind": location.kind,
                "on_hand": 0,
                "reserved": 0,
                "safety_stock": location.safety_stock,
                "available": 0,
                "in_transit": incoming[(location.pk, variant.pk)],
                "updated_at": None,
            }
            for location in Location.objects.filter(pk__in=awaited)
        )
        result.sort(key=lambda entry: entry["location"])
    return result


def transfers_to_receive(location: Location):
    return (
        Transfer.objects.filter(to_location=location, status=TransferStatus.SHIPPED)
        .select_related("from_location")
        .prefetch_related("lines__variant")
        .order_by("shipped_at")
    )
