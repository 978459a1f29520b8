"""Stock lookup at the counter: by SKU, barcode (GTIN) or product title, what this store holds,
the nearest other stores that can sell it, and what each online channel may promise.

An exact SKU or barcode finds one item (``catalog.selectors.variant_by_code``); otherwise up to
``MAX_MATCHES`` items whose product title contains the words. Stock, channel availability and
transfers on their way are then read for all the items at once: a fixed number of queries
whatever the number of items or stores.
"""

from collections import defaultdict

from django.db.models import F, Q
from django.db.models.functions import Coalesce, Greatest
from django.shortcuts import render

from catalog.models import Variant
from catalog.selectors import variant_by_code
from inventory.models import ChannelAvailability, LocationKind, StockLevel
from inventory.services import availability_state, distance_km, in_transit
from omni.models import Channel, ChannelKind
from orders.forms import SearchForm

from .base import store_page

MAX_MATCHES = 20
NEAREST = 5
MAX_WORDS = 5


def _title_matches(text: str) -> tuple[list[Variant], bool]:
    """Active items whose product title holds every word of ``text``; and whether there were
    more than ``MAX_MATCHES``."""
    condition = Q()
    for word in text.split()[:MAX_WORDS]:
        condition &= Q(product__title__icontains=word)
    found = list(
        Variant.objects.filter(condition, is_active=True)
        .select_related("product")
        .order_by("product__title", "sku")[: MAX_MATCHES + 1]
    )
    return found[:MAX_MATCHES], len(found) > MAX_MATCHES


def _stock_by_variant(variant_ids) -> dict[int, list[StockLevel]]:
    """Every location's stock row of these items, with ``sellable`` (on hand - reserved -
    safety stock, at least 0) as ``inventory.selectors.stock_for_variant`` computes it."""
    rows = (
        StockLevel.objects.filter(variant_id__in=variant_ids, location__is_active=True)
        .select_related("location")
        .annotate(
            sellable=Greatest(
                F("on_hand")
                - F("reserved")
                - Coalesce(F("safety_stock"), F("location__safety_stock")),
                0,
            )
        )
    )
    by_variant = defaultdict(list)
    for row in rows:
        by_variant[row.variant_id].append(row)
    return by_variant


def _online_by_variant(variant_ids) -> tuple[list[Channel], dict[tuple[int, int], tuple]]:
    """The online sales channels and what each may promise of each item."""
    channels = list(
        Channel.objects.sales().active().exclude(kind=ChannelKind.STORE_POS).order_by("name")
    )
    rows = ChannelAvailability.objects.filter(
        variant_id__in=variant_ids, channel__in=channels
    ).values_list("variant_id", "channel_id", "quantity", "is_low_stock")
    return channels, {(v, c): (quantity, low) for v, c, quantity, low in rows}


def _distance(here, there) -> float | None:
    if None in (here.latitude, here.longitude, there.latitude, there.longitude):
        return None
    return distance_km((here.latitude, here.longitude), (there.latitude, there.longitude))


def stock_lookup(variants: list[Variant], here) -> list[dict]:
    """Per item: this store's row, the nearest other stores with stock, the online channels."""
    ids = [v.pk for v in variants]
    stock = _stock_by_variant(ids)
    channels, online = _online_by_variant(ids)
    incoming = in_transit(to_location=here, variant_ids=ids)
    results = []
    for variant in variants:
        rows = stock[variant.pk]
        mine = next((row for row in rows if row.location_id == here.pk), None)
        others = [
            {"location": row.location, "row": row, "km": _distance(here, row.location)}
            for row in rows
            if row.location_id != here.pk
            and row.location.kind == LocationKind.STORE
            and row.sellable > 0
        ]
        # Nearest first; stores without coordinates last, by code.
        others.sort(
            key=lambda o: (o["km"] is None, o["km"] or 0, o["location"].code),
        )
        results.append(
            {
                "variant": variant,
                "here": {
                    "on_hand": mine.on_hand if mine else 0,
                    "reserved": mine.reserved if mine else 0,
                    "available": mine.sellable if mine else 0,
                    "incoming": incoming.get((here.pk, variant.pk), 0),
                },
                "nearest": others[:NEAREST],
                "more_stores": max(0, len(others) - NEAREST),
                "online": [
                    {
                        "channel": channel,
                        "quantity": online.get((variant.pk, channel.pk), (0, False))[0],
                        "state": availability_state(
                            *online.get((variant.pk, channel.pk), (0, False))
                        ),
                    }
                    for channel in channels
                ],
            }
        )
    return results


@store_page
def stock(request, location):
    form = SearchForm(request.GET or None)
    context = {"form": form, "query": "", "results": [], "more": False, "exact": False}
    if form.is_valid() and form.cleaned_data["q"]:
        text = form.cleaned_data["q"]
        variant = variant_by_code(text)
        if variant is not None:
            variants, more = [variant], False
        else:
            variants, more = _title_matches(text)
        context.update(
            query=text,
            exact=variant is not None,
            more=more,
            max_matches=MAX_MATCHES,
            results=stock_lookup(variants, location) if variants else [],
        )
    return render(request, "store/stock.html", context)
