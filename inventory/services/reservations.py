"""Reservations: stock held for order lines, checkouts and transfers, never more than exists."""

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from inventory.models import (
    AllocationStrategy,
    ChannelStockPolicy,
    ChannelStockRule,
    Location,
    MovementKind,
    Reservation,
    ReservationKind,
    ReservationStatus,
    StockLevel,
)
from omni.exceptions import InsufficientStock, OmniError, ValidationFailed
from omni.models import Channel
from omni.services import outbox_emit_many

from .common import (
    Move,
    after_commit_refresh,
    bulk_increment,
    positive_quantity,
    require_active_location,
    stock_level_lock,
    variant_of,
    variants_by_sku,
    write_moves,
)

REFERENCE_MAX = Reservation._meta.get_field("reference").max_length
TRANSFER_REFERENCE_PREFIX = "transfer:"


def refuse_transfer_reference(reference: str | None) -> None:
    """Stock held for a transfer moves only with the transfer (ship, receive, cancel)."""
    if reference and reference.startswith(TRANSFER_REFERENCE_PREFIX):
        message = (
            f"References starting with {TRANSFER_REFERENCE_PREFIX!r} belong to transfers; "
            "use the transfer endpoints."
        )
        raise ValidationFailed(message, extra={"reference": [message]})


TRANSFER_HOLD_CODE = "transfer_reservation"


def _refuse_transfer_holds(reservations: list[Reservation]) -> None:
    """Reservations picked by themselves (not by reference) may be transfer holds too; those
    move only with their transfer, through ``_release``."""
    held = sorted({r.reference for r in reservations if r.kind == ReservationKind.TRANSFER})
    if held:
        message = (
            f"Stock held for {', '.join(held)} moves only with the transfer; ship or cancel "
            "the transfer instead."
        )
        raise ValidationFailed(message, code=TRANSFER_HOLD_CODE, extra={"reservations": [message]})


@dataclass
class ReserveLine:
    variant: object  # a Variant or a SKU
    quantity: int
    location: Location | None = None  # pinned: reserve here only (pickup at this store)
    line_reference: str = ""


def _sellable(row: StockLevel, location: Location, pending: int = 0) -> int:
    """What ``row`` may still hold for someone: on hand - reserved (- ``pending``, reserved in
    this transaction but not written yet) - safety stock, never below zero."""
    safety = row.safety_stock if row.safety_stock is not None else location.safety_stock
    return max(0, row.on_hand - row.reserved - pending - safety)


def sellable_quantities(pairs) -> dict[tuple[int, int], int]:
    """What each ``(location id, variant id)`` may still hold for someone, by the same rule as
    ``stock_reserve``, read without locks (for planning; the reservation re-checks under its
    locks). Pairs without a stock row hold nothing."""
    pairs = set(pairs)
    if not pairs:
        return {}
    location_ids = {loc for loc, _ in pairs}
    variant_ids = {var for _, var in pairs}
    locations = Location.objects.in_bulk(location_ids)
    rows = StockLevel.objects.filter(location_id__in=location_ids, variant_id__in=variant_ids)
    found = {
        (row.location_id, row.variant_id): _sellable(row, locations[row.location_id])
        for row in rows
        if (row.location_id, row.variant_id) in pairs
    }
    return {pair: found.get(pair, 0) for pair in pairs}


def distance_km(a, b) -> float:
    """Great-circle distance in km between two ``(latitude, longitude)`` points."""
    return _distance_km(a, b)


def _distance_km(a, b) -> float:
    """Great-circle distance between two (latitude, longitude) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (float(a[0]), float(a[1]), float(b[0]), float(b[1])))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 6371.0 * 2 * math.asin(math.sqrt(h))


def channel_sources(channel: Channel) -> list[tuple[Location, int]]:
    """The active locations that feed ``channel``, with their priority, best first."""
    rules = (
        ChannelStockRule.objects.filter(channel=channel, location__is_active=True)
        .select_related("location")
        .order_by("priority", "location__code")
    )
    return [(rule.location, rule.priority) for rule in rules]


def _policy(channel: Channel | None) -> ChannelStockPolicy | None:
    if channel is None:
        return None
    return ChannelStockPolicy.objects.filter(channel=channel).first()


def _strategy(channel: Channel | None, policy: ChannelStockPolicy | None = None) -> str:
    policy = policy if policy is not None else _policy(channel)
    return policy.allocation_strategy if policy else AllocationStrategy.PRIORITY


def _order_candidates(candidates, strategy, available_of, near):
    """Candidates ``[(location, priority)]`` in the order the strategy serves them."""
    if strategy == AllocationStrategy.MOST_STOCK:
        return sorted(candidates, key=lambda c: (-available_of(c[0]), c[1], c[0].code))
    if strategy == AllocationStrategy.NEAREST and near is not None:

        def distance(c):
            loc = c[0]
            if loc.latitude is None:
                return math.inf
            return _distance_km(near, (loc.latitude, loc.longitude))

        return sorted(candidates, key=lambda c: (distance(c), c[1], c[0].code))
    return list(candidates)  # already by priority


def _validate_channel(channel: Channel) -> None:
    if not channel.is_sales or not channel.is_active:
        raise ValidationFailed(
            f"Stock is reserved for active sales channels; {channel.code} is not one.",
            code="not_a_sales_channel",
            extra={"channel": [f"{channel.code} is not an active sales channel."]},
        )


@transaction.atomic
def stock_reserve(
    *,
    channel: Channel | None,
    lines: list[ReserveLine],
    reference: str,
    kind: str = ReservationKind.ORDER_LINE,
    expires_at=None,
    near: tuple | None = None,
    shipping: bool = False,
) -> list[Reservation]:
    """Hold stock for every line, or for none.

    Each line is served from the locations that feed the channel, in the order of the channel's
    allocation strategy (a line may be split over locations), or only from its pinned location.
    Never takes more than ``on_hand - reserved - safety stock`` at a location. Stock rows are
    locked in primary-key order. A short line refuses the whole request with
    ``insufficient_stock``, saying for each short line how much is available. With
    ``shipping``, only locations that ship online orders serve the unpinned lines (a parcel
    leaves from a warehouse or a shipping store, not from any shop floor).
    """
    reference = (reference or "").strip()
    too_long = [
        (field, value)
        for field, value in [("reference", reference)]
        + [("line_reference", line.line_reference or "") for line in lines]
        if len(value) > REFERENCE_MAX
    ]
    if too_long:
        field, value = too_long[0]
        raise ValidationFailed(
            f"A {field.replace('_', ' ')} has at most {REFERENCE_MAX} characters; "
            f"{value[:20]}… has {len(value)}.",
            extra={field: [f"At most {REFERENCE_MAX} characters."]},
        )
    if not reference:
        raise ValidationFailed(
            "A reservation needs a reference.", extra={"reference": ["Required."]}
        )
    if not lines:
        raise ValidationFailed("Nothing to reserve.", extra={"lines": ["At least one line."]})
    if kind != ReservationKind.TRANSFER:
        refuse_transfer_reference(reference)
    if kind not in ReservationKind.values:
        raise ValidationFailed(f"Unknown reservation kind {kind!r}.", extra={"kind": ["Invalid."]})
    if channel is not None:
        _validate_channel(channel)
    errors = {}
    resolved = []
    variants = variants_by_sku(line.variant for line in lines)
    for index, line in enumerate(lines):
        try:
            variant = variant_of(variants, line.variant)
            quantity = positive_quantity(line.quantity)
            if not variant.is_active:
                raise ValidationFailed(
                    f"{variant.sku} is not sold any more.",
                    extra={"sku": [f"{variant.sku} is inactive."]},
                )
            if line.location is not None:
                require_active_location(line.location)
        except OmniError as exc:
            errors[str(index)] = exc.extra or {"line": [exc.message]}
            continue
        resolved.append((index, variant, quantity, line))
    if errors:
        raise ValidationFailed("Some lines cannot be reserved.", extra={"lines": errors})

    sources = channel_sources(channel) if channel is not None else []
    if shipping:
        sources = [(loc, priority) for loc, priority in sources if loc.ships_online_orders]
    policy = _policy(channel)
    if kind == ReservationKind.CHECKOUT_HOLD and expires_at is None:
        expires_at = timezone.now() + timedelta(
            minutes=policy.checkout_hold_minutes if policy else 30
        )

    plan_candidates = {}
    pairs = set()
    for index, variant, _quantity, line in resolved:
        candidates = [(line.location, 0)] if line.location is not None else sources
        plan_candidates[index] = candidates
        pairs.update((loc.pk, variant.pk) for loc, _ in candidates)
    rows = stock_level_lock(pairs)
    locations = {loc.pk: loc for loc, _ in sources}
    locations.update({line.location.pk: line.location for line in lines if line.location})
    available = {pair: _sellable(row, locations[pair[0]]) for pair, row in rows.items()}

    strategy = _strategy(channel, policy)
    allocations = []  # (line index, location, variant, quantity, line)
    short = []
    for index, variant, quantity, line in resolved:
        candidates = _order_candidates(
            plan_candidates[index],
            strategy if line.location is None else AllocationStrategy.PRIORITY,
            lambda loc, v=variant: available.get((loc.pk, v.pk), 0),
            near,
        )
        remaining = quantity
        for location, _priority in candidates:
            take = min(remaining, available.get((location.pk, variant.pk), 0))
            if take <= 0:
                continue
            available[(location.pk, variant.pk)] -= take
            allocations.append((index, location, variant, take, line))
            remaining -= take
            if remaining == 0:
                break
        if remaining:
            short.append(
                {
                    "index": index,
                    "sku": variant.sku,
                    "requested": quantity,
                    "available": quantity - remaining,
                }
            )
    if short:
        first = short[0]
        raise InsufficientStock(
            f"Not enough stock for {first['sku']}: {first['requested']} requested, "
            f"{first['available']} available."
            + (f" ({len(short)} lines are short.)" if len(short) > 1 else ""),
            extra={"lines": short},
        )

    deltas = defaultdict(lambda: {"reserved": 0})
    reservations = []
    for _index, location, variant, take, line in allocations:
        deltas[rows[(location.pk, variant.pk)].pk]["reserved"] += take
        reservations.append(
            Reservation(
                location=location,
                variant=variant,
                channel=channel,
                kind=kind,
                quantity=take,
                reference=reference,
                line_reference=line.line_reference,
                pinned=line.location is not None,
                expires_at=expires_at,
            )
        )
    bulk_increment(deltas)
    created = Reservation.objects.bulk_create(reservations)
    after_commit_refresh(r.variant_id for r in created)
    return created


def _active(reference=None, line_reference=None, reservations=None):
    queryset = Reservation.objects.filter(status=ReservationStatus.ACTIVE)
    if reservations is not None:
        queryset = queryset.filter(pk__in=[r.pk if hasattr(r, "pk") else r for r in reservations])
    if reference is not None:
        queryset = queryset.filter(reference=reference)
    if line_reference is not None:
        queryset = queryset.filter(line_reference=line_reference)
    return queryset


def _lock_reservations(queryset) -> list[Reservation]:
    """Lock the stock rows of the reservations first (the one lock order), then the
    reservations themselves, re-read under the lock."""
    pairs = set(queryset.values_list("location_id", "variant_id"))
    stock_level_lock(pairs)
    return list(queryset.select_for_update().order_by("pk"))


def _close(reservations, status, *, now, reason="") -> None:
    deltas = defaultdict(lambda: {"reserved": 0})
    rows = stock_level_lock({(r.location_id, r.variant_id) for r in reservations})
    for reservation in reservations:
        deltas[rows[(reservation.location_id, reservation.variant_id)].pk]["reserved"] -= (
            reservation.quantity
        )
    bulk_increment(deltas)
    Reservation.objects.filter(pk__in=[r.pk for r in reservations]).update(
        status=status,
        closed_at=now,
        updated_at=now,
        attention_reason=reason if reason else F("attention_reason"),
        needs_attention=False,
    )
    after_commit_refresh(r.variant_id for r in reservations)


def _require_selection(reference, reservations, verb: str) -> None:
    """Without a reference or reservations every active reservation would match."""
    if reference is None and reservations is None:
        raise ValidationFailed(
            f"Say which reservations to {verb}.", extra={"reference": ["Required."]}
        )


@transaction.atomic
def stock_release(
    *, reference: str | None = None, line_reference: str | None = None, reservations=None
) -> int:
    """Give back held stock. Returns the units released; releasing twice releases nothing.
    Stock held for a transfer is refused (``transfer_reservation``): it moves only with the
    transfer."""
    _require_selection(reference, reservations, "release")
    refuse_transfer_reference(reference)
    locked = _lock_reservations(_active(reference, line_reference, reservations))
    _refuse_transfer_holds(locked)
    return _close_released(locked)


def _release(*, reservations) -> int:
    """``stock_release`` for the transfers module, which alone may give back a transfer's
    hold (when it ships or is cancelled). Runs in the caller's transaction."""
    return _close_released(_lock_reservations(_active(reservations=reservations)))


def _close_released(locked: list[Reservation]) -> int:
    _close(locked, ReservationStatus.RELEASED, now=timezone.now())
    return sum(r.quantity for r in locked)


@transaction.atomic
def stock_consume(
    *,
    reference: str | None = None,
    line_reference: str | None = None,
    reservations=None,
    source: str = "orders",
    actor=None,
    kind: str = MovementKind.SALE,
) -> list:
    """Fulfil held stock: the goods leave (a sale, or a transfer out), ``on_hand`` and
    ``reserved`` both drop, and the ledger records it. Returns the movements written. Stock
    held for a transfer is refused (``transfer_reservation``): it moves only with the
    transfer."""
    _require_selection(reference, reservations, "fulfil")
    refuse_transfer_reference(reference)
    locked = _lock_reservations(_active(reference, line_reference, reservations))
    _refuse_transfer_holds(locked)
    if not locked:
        raise ValidationFailed(
            "There is no active reservation to fulfil.",
            code="no_active_reservation",
            extra={"reference": [f"Nothing held for {reference or 'these reservations'}."]},
        )
    now = timezone.now()
    moves = [
        Move(
            location_id=r.location_id,
            variant_id=r.variant_id,
            kind=kind,
            quantity=-r.quantity,
            channel_id=r.channel_id,
            reference=r.reference,
        )
        for r in locked
    ]
    movements = write_moves(moves, source=source, actor=actor, now=now)
    _close(locked, ReservationStatus.CONSUMED, now=now)
    return movements


@transaction.atomic
def reservations_expire(*, now=None, limit: int = 5000) -> int:
    """Release checkout holds past their expiry (a batch of up to ``limit``)."""
    now = now or timezone.now()
    ids = list(
        Reservation.objects.filter(status=ReservationStatus.ACTIVE, expires_at__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    locked = _lock_reservations(_active(reservations=ids).filter(expires_at__lte=now))
    _close(locked, ReservationStatus.EXPIRED, now=now, reason="Checkout hold expired.")
    return len(locked)


@dataclass
class ResourceResult:
    moved: int = 0
    flagged: int = 0


def broken_pairs(variant_ids=None, location_ids=None) -> list[tuple[int, int]]:
    """Stock rows holding more than is there (a sale took what was reserved)."""
    queryset = StockLevel.objects.filter(reserved__gt=Greatest(F("on_hand"), 0))
    if variant_ids is not None:
        queryset = queryset.filter(variant_id__in=variant_ids)
    if location_ids is not None:
        queryset = queryset.filter(location_id__in=location_ids)
    return list(queryset.order_by("pk").values_list("location_id", "variant_id"))


@transaction.atomic
def reservations_resource(*, variant_ids) -> ResourceResult:
    """Mend reservations that a sale broke: where a location holds more than it has, move the
    shortfall to other locations that feed the reservation's channel, or flag it for staff.
    Reservations pinned to the location (a pickup there) are flagged, not moved. Idempotent."""
    result = ResourceResult()
    variant_ids = sorted(set(variant_ids))
    if not variant_ids:
        return result
    # Every location's row of these variants, locked in primary-key order, so moving a
    # reservation to another location needs no further lock.
    all_pairs = StockLevel.objects.filter(variant_id__in=variant_ids).values_list(
        "location_id", "variant_id"
    )
    rows = stock_level_lock(all_pairs)
    locations = {loc.pk: loc for loc in Location.objects.filter(pk__in={p[0] for p in rows})}
    now = timezone.now()
    deltas = defaultdict(lambda: {"reserved": 0})
    new_reservations, events = [], []
    for (location_id, variant_id), row in sorted(rows.items(), key=lambda item: item[1].pk):
        shortfall = row.reserved - max(row.on_hand, 0)
        if shortfall <= 0:
            continue
        held = list(
            Reservation.objects.select_for_update(of=("self",))
            .filter(status=ReservationStatus.ACTIVE, location_id=location_id, variant_id=variant_id)
            .select_related("channel")
            .order_by("pk")
        )
        # Checkout holds give way first, then the newest order lines; pinned ones last.
        held.sort(key=lambda r: (r.pinned, r.kind != ReservationKind.CHECKOUT_HOLD, -r.pk))
        for reservation in held:
            if shortfall <= 0:
                break
            part = min(shortfall, reservation.quantity)
            moved = 0
            if not reservation.pinned and reservation.channel_id is not None:
                channel = reservation.channel
                candidates = [c for c in channel_sources(channel) if c[0].pk != location_id]
                origin = locations[location_id]
                near = (origin.latitude, origin.longitude) if origin.latitude is not None else None
                candidates = _order_candidates(
                    candidates,
                    _strategy(channel),
                    lambda loc, v=variant_id: _free(rows, locations, loc, v, deltas),
                    near,
                )
                for location, _priority in candidates:
                    take = min(part - moved, _free(rows, locations, location, variant_id, deltas))
                    if take <= 0:
                        continue
                    deltas[rows[(location.pk, variant_id)].pk]["reserved"] += take
                    new_reservations.append(
                        Reservation(
                            location=location,
                            variant_id=variant_id,
                            channel_id=reservation.channel_id,
                            kind=reservation.kind,
                            quantity=take,
                            reference=reservation.reference,
                            line_reference=reservation.line_reference,
                            expires_at=reservation.expires_at,
                        )
                    )
                    moved += take
                    if moved == part:
                        break
            if moved:
                deltas[row.pk]["reserved"] -= moved
                result.moved += moved
                if moved == reservation.quantity:
                    reservation.status = ReservationStatus.RELEASED
                    reservation.closed_at = now
                    reservation.attention_reason = "Moved to other locations after a sale here."
                else:
                    reservation.quantity -= moved
                reservation.updated_at = now
                reservation.save(
                    update_fields=[
                        "status",
                        "closed_at",
                        "attention_reason",
                        "quantity",
                        "updated_at",
                    ]
                )
                events.append(_event("inventory.reservation_resourced", reservation, moved))
            shortfall -= part
            if moved == part:
                continue
            short = part - moved
            reason = (
                f"Short by {short} at {locations[location_id].code} after an in-store sale; "
                "no other location could take it over."
            )
            if reservation.needs_attention and reservation.attention_reason == reason:
                continue  # flagged before for this same shortfall: nothing new (idempotent)
            reservation.needs_attention = True
            reservation.attention_reason = reason
            reservation.updated_at = now
            reservation.save(update_fields=["needs_attention", "attention_reason", "updated_at"])
            events.append(_event("inventory.reservation_at_risk", reservation, short))
            result.flagged += 1
    bulk_increment(deltas)
    if new_reservations:
        Reservation.objects.bulk_create(new_reservations)
    if events:
        outbox_emit_many(events)
    after_commit_refresh(variant_ids)
    return result


def _free(rows, locations, location, variant_id, deltas) -> int:
    row = rows.get((location.pk, variant_id))
    if row is None:
        return 0
    return _sellable(row, location, deltas[row.pk]["reserved"] if row.pk in deltas else 0)


def _event(type_, reservation, quantity) -> dict:
    return {
        "type": type_,
        "subject_type": "reservation",
        "subject_id": reservation.pk,
        "payload": {
            "reference": reservation.reference,
            "line_reference": reservation.line_reference,
            "location_id": reservation.location_id,
            "variant_id": reservation.variant_id,
            "quantity": quantity,
        },
    }
