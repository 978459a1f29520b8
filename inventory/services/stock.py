"""Stock movements: receive, adjust, sell, return, and POS batches of them."""

import hashlib
import json
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Variant
from catalog.validators import normalize_sku
from inventory.models import (
    CountStatus,
    Location,
    MovementBatch,
    MovementKind,
    StockCount,
    StockLevel,
    StockMovement,
)
from omni.exceptions import Conflict, ValidationFailed
from omni.formats import parse_past_time
from omni.models import Channel

from .common import (
    MAX_QUANTITY,
    Move,
    after_commit,
    after_commit_refresh,
    positive_quantity,
    require_active_location,
    stock_level_lock,
    variants_by_sku,
    write_moves,
)

MAX_BATCH = 10_000
BATCH_KINDS = (
    MovementKind.SALE,
    MovementKind.RETURN,
    MovementKind.RECEIPT,
    MovementKind.ADJUSTMENT,
)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Say why the stock changes.", extra={"reason": ["Required."]})
    if len(reason) > 200:
        raise ValidationFailed("The reason is too long.", extra={"reason": ["At most 200."]})
    return reason


def _single(
    *, location, variant, kind, quantity, source, actor, reference="", reason="", channel=None
):
    require_active_location(location)
    movements = write_moves(
        [
            Move(
                location_id=location.pk,
                variant_id=variant.pk,
                kind=kind,
                quantity=quantity,
                reference=(reference or "").strip()[:120],
                reason=reason,
                channel_id=channel.pk if channel else None,
            )
        ],
        source=source,
        actor=actor,
    )
    after_commit_refresh([variant.pk])
    return movements[0]


@transaction.atomic
def stock_receive(
    *, location: Location, variant: Variant, quantity, source="admin", actor=None, reference=""
) -> StockMovement:
    """Goods arrived at ``location`` (a delivery from a supplier)."""
    quantity = positive_quantity(quantity)
    return _single(
        location=location,
        variant=variant,
        kind=MovementKind.RECEIPT,
        quantity=quantity,
        source=source,
        actor=actor,
        reference=reference,
    )


@transaction.atomic
def stock_adjust(
    *, location: Location, variant: Variant, quantity, reason: str, source="admin", actor=None
) -> StockMovement:
    """Change what ``location`` holds by ``quantity`` units (signed), for a stated reason
    (damage, theft, found). ``on_hand`` may not go below what is reserved there."""
    reason = _reason(reason)
    try:
        quantity = int(quantity)
    except (TypeError, ValueError):
        raise ValidationFailed(
            f"The change must be a whole number, not {quantity!r}.",
            extra={"quantity": ["A whole number (negative to remove units)."]},
        ) from None
    if quantity == 0:
        raise ValidationFailed("A change of zero changes nothing.", extra={"quantity": ["Not 0."]})
    if abs(quantity) > MAX_QUANTITY:
        raise ValidationFailed(
            f"A change of at most {MAX_QUANTITY:,} units.",
            extra={"quantity": [f"At most {MAX_QUANTITY:,} units either way."]},
        )
    row = stock_level_lock([(location.pk, variant.pk)], create_missing=True)[
        (location.pk, variant.pk)
    ]
    if row.on_hand + quantity < row.reserved:
        raise ValidationFailed(
            f"{location.code} would hold {row.on_hand + quantity} of {variant.sku} but "
            f"{row.reserved} are reserved there; release or move reservations first.",
            code="below_reserved",
            extra={
                "quantity": [
                    f"Remove at most {row.on_hand - row.reserved}: {row.reserved} of the "
                    f"{row.on_hand} units there are reserved."
                    if row.on_hand > row.reserved
                    else f"Add at least {row.reserved - row.on_hand}: all {row.on_hand} units "
                    f"there are reserved ({row.reserved})."
                ]
            },
        )
    return _single(
        location=location,
        variant=variant,
        kind=MovementKind.ADJUSTMENT,
        quantity=quantity,
        source=source,
        actor=actor,
        reason=reason,
    )


@transaction.atomic
def stock_sell(
    *,
    location: Location,
    variant: Variant,
    quantity,
    channel: Channel | None = None,
    source="pos",
    actor=None,
    reference="",
) -> StockMovement:
    """An in-store sale. Accepted even when the ledger says there is nothing (the goods left
    the shelf): the location is then flagged for a count, and reservations the sale broke are
    moved to other locations or flagged for staff once it commits."""
    quantity = positive_quantity(quantity)
    movement = _single(
        location=location,
        variant=variant,
        kind=MovementKind.SALE,
        quantity=-quantity,
        source=source,
        actor=actor,
        reference=reference,
        channel=channel,
    )
    _check_after_sales([(location.pk, variant.pk)])
    return movement


@transaction.atomic
def stock_return(
    *,
    location: Location,
    variant: Variant,
    quantity,
    channel: Channel | None = None,
    source="pos",
    actor=None,
    reference="",
) -> StockMovement:
    """Goods brought back to ``location``, back on its shelf."""
    quantity = positive_quantity(quantity)
    return _single(
        location=location,
        variant=variant,
        kind=MovementKind.RETURN,
        quantity=quantity,
        source=source,
        actor=actor,
        reference=reference,
        channel=channel,
    )


@transaction.atomic
def stock_level_set_safety_stock(*, stock_level: StockLevel, safety_stock) -> StockLevel:
    """Keep ``safety_stock`` units of this item back at this location (None: the location's
    default). Only that field is written, so counters moved meanwhile are kept; the item's
    channel availability follows after commit."""
    valid = isinstance(safety_stock, int) and not isinstance(safety_stock, bool)
    if safety_stock is not None and not (valid and safety_stock >= 0):
        raise ValidationFailed(
            "Safety stock is a whole number, 0 or more (empty: the location's default).",
            extra={"safety_stock": ["A whole number, 0 or more."]},
        )
    stock_level.safety_stock = safety_stock
    stock_level.save(update_fields=["safety_stock", "updated_at"])
    after_commit_refresh([stock_level.variant_id])
    return stock_level


def stock_count_request(*, location: Location, reason: str, actor=None) -> StockCount:
    """Ask a location for a count (one open request per location; a second adds nothing)."""
    now = timezone.now()
    with transaction.atomic():
        count, created = StockCount.objects.get_or_create(
            location=location,
            status=CountStatus.REQUESTED,
            defaults={"reason": (reason or "")[:200], "requested_at": now, "source": "omni"},
        )
        if created or location.count_requested_at is None:
            Location.objects.filter(pk=location.pk).update(count_requested_at=now)
            location.count_requested_at = now
    return count


def _check_after_sales(pairs, locked=None) -> None:
    """After sales (and a POS batch's negative adjustments): a location that gave out more
    than its ledger held (on hand below zero) gets a count request; reservations they broke
    are mended after commit. ``locked``: the stock rows the caller holds (as
    ``stock_level_lock`` returns them), else they are locked here."""
    from .reservations import reservations_resource

    locked = locked or stock_level_lock(pairs)
    rows = StockLevel.objects.filter(pk__in=[locked[pair].pk for pair in pairs]).values_list(
        "location_id", "variant_id", "on_hand", "reserved"
    )
    suspicious_locations, broken_variants = set(), set()
    for location_id, variant_id, on_hand, reserved in rows:
        if on_hand < 0:
            suspicious_locations.add(location_id)
        if reserved > max(on_hand, 0):
            broken_variants.add(variant_id)
    for location in Location.objects.filter(pk__in=suspicious_locations):
        stock_count_request(location=location, reason="A sale took more than the ledger held.")
    if broken_variants:
        after_commit(reservations_resource, variant_ids=sorted(broken_variants))


# --- POS batches ------------------------------------------------------------------------------


@dataclass
class BatchResult:
    batch: MovementBatch
    replayed: bool

    @property
    def as_dict(self) -> dict:
        return {
            "batch_id": self.batch.batch_id,
            "movements": self.batch.movement_count,
            "applied": self.batch.applied_count,
            "duplicates": self.batch.duplicate_count,
            "replayed": self.replayed,
            "received_at": self.batch.received_at,
        }


def batch_fingerprint(movements) -> str:
    return hashlib.sha256(json.dumps(movements, sort_keys=True, default=str).encode()).hexdigest()


def _validate_batch(movements, default_location: Location | None, now):
    """Every movement checked at once; returns the moves or raises with errors by index."""
    if not isinstance(movements, list) or not movements:
        raise ValidationFailed(
            "A batch needs at least one movement.", extra={"movements": ["At least one."]}
        )
    if len(movements) > MAX_BATCH:
        raise ValidationFailed(
            f"A batch holds at most {MAX_BATCH:,} movements; this one has {len(movements):,}.",
            code="batch_too_large",
            extra={"movements": [f"At most {MAX_BATCH}."]},
        )
    variants = variants_by_sku(
        (str(m.get("sku") or "") for m in movements if isinstance(m, dict)), only=("sku",)
    )
    codes = {str(m.get("location")) for m in movements if isinstance(m, dict) and m.get("location")}
    locations = {loc.code: loc for loc in Location.objects.filter(code__in=codes)}
    errors, moves, seen = {}, [], {}
    for index, raw in enumerate(movements):
        problems = {}
        if not isinstance(raw, dict):
            errors[str(index)] = {"movement": ["Must be an object."]}
            continue
        external_id = str(raw.get("id") or "").strip()
        if not external_id:
            problems["id"] = ["Required: your id of this movement."]
        elif len(external_id) > 100:
            problems["id"] = ["At most 100 characters."]
        elif external_id in seen:
            problems["id"] = [f"Repeats movement {seen[external_id]} of this batch."]
        else:
            seen[external_id] = index
        sku = normalize_sku(str(raw.get("sku") or ""))
        if not sku:
            problems["sku"] = ["Required."]
        elif sku not in variants:
            problems["sku"] = [f"Unknown SKU {raw.get('sku')}."]
        code = raw.get("location")
        location = locations.get(str(code)) if code else default_location
        if location is None:
            problems["location"] = [f"Unknown location {code}." if code else "Required."]
        elif not location.is_active:
            problems["location"] = [f"{location.code} is inactive."]
        kind = raw.get("kind")
        if kind not in BATCH_KINDS:
            problems["kind"] = [f"One of: {', '.join(BATCH_KINDS)}."]
        quantity = raw.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            problems["quantity"] = ["A whole number."]
        elif abs(quantity) > MAX_QUANTITY:
            problems["quantity"] = [f"At most {MAX_QUANTITY:,} units."]
        elif kind == MovementKind.ADJUSTMENT:
            if quantity == 0:
                problems["quantity"] = ["Not 0 (negative to remove units)."]
        elif quantity <= 0:
            problems["quantity"] = ["At least 1 (the kind says the direction)."]
        if kind == MovementKind.ADJUSTMENT and not str(raw.get("reason") or "").strip():
            problems["reason"] = ["Required for an adjustment."]
        occurred_at, time_error = parse_past_time(raw.get("occurred_at"), now)
        if time_error:
            problems["occurred_at"] = [time_error]
        reference = str(raw.get("reference") or "")
        if len(reference) > 120:
            problems["reference"] = ["At most 120 characters."]
        if problems:
            errors[str(index)] = problems
            continue
        signed = -quantity if kind == MovementKind.SALE else quantity
        moves.append(
            Move(
                location_id=location.pk,
                variant_id=variants[sku].pk,
                kind=kind,
                quantity=signed,
                reference=reference,
                reason=str(raw.get("reason") or "")[:200],
                idempotency_key=external_id,
                occurred_at=occurred_at,
            )
        )
    if errors:
        raise ValidationFailed(
            f"{len(errors)} of {len(movements)} movements are invalid; nothing was applied.",
            code="invalid_batch",
            extra={"movements": errors},
        )
    return moves


def movement_batch_apply(
    *,
    source: str,
    batch_id: str,
    movements: list,
    location: Location | None = None,
    channel: Channel | None = None,
    actor=None,
    fingerprint: str | None = None,
) -> BatchResult:
    """Apply a batch of movements from a POS or another integrator exactly once.

    ``source`` names the sender; ``batch_id`` and each movement's ``id`` are the sender's. The
    same batch again (at the same time or later) is answered from the first, writing nothing;
    a movement already recorded by another batch is skipped and counted as a duplicate. Any
    invalid movement refuses the whole batch with every error by index. ``fingerprint`` says
    what makes two sends the same batch (the API passes a hash of the request body); by
    default a hash of the movements.
    """
    batch_id = str(batch_id or "").strip()
    if not batch_id or len(batch_id) > 100:
        raise ValidationFailed(
            "A batch needs an id of at most 100 characters.", extra={"batch_id": ["Required."]}
        )
    fingerprint = fingerprint or batch_fingerprint(
        {"location": location.code if location else None, "movements": movements}
    )
    existing = MovementBatch.objects.filter(source=source, batch_id=batch_id).first()
    if existing is not None:
        return _replay(existing, fingerprint)
    now = timezone.now()
    moves = _validate_batch(movements, location, now)
    for move in moves:
        move.channel_id = channel.pk if channel else None
    try:
        with transaction.atomic():
            batch, created = MovementBatch.objects.get_or_create(
                source=source,
                batch_id=batch_id,
                defaults={
                    "fingerprint": fingerprint,
                    "location": location,
                    "movement_count": len(moves),
                },
            )
            if not created:  # the same batch committed while this one was validated
                return _replay(batch, fingerprint)
            rows = stock_level_lock(
                [(m.location_id, m.variant_id) for m in moves], create_missing=True
            )
            keys = [m.idempotency_key for m in moves]
            done = set()
            for start in range(0, len(keys), 5000):
                done.update(
                    StockMovement.objects.filter(
                        source=source, idempotency_key__in=keys[start : start + 5000]
                    ).values_list("idempotency_key", flat=True)
                )
            fresh = [m for m in moves if m.idempotency_key not in done]
            write_moves(fresh, source=source, actor=actor, now=now, rows=rows, returning=False)
            batch.applied_count = len(fresh)
            batch.duplicate_count = len(moves) - len(fresh)
            batch.save(update_fields=["applied_count", "duplicate_count"])
            # What left the shelf is recorded as the till saw it, even below what is reserved
            # (a batch reports the past; it cannot be refused as ``stock_adjust`` is): sales
            # and negative adjustments alike are followed by the check after sales.
            taken = {(m.location_id, m.variant_id) for m in fresh if m.quantity < 0}
            if taken:
                _check_after_sales(taken, locked=rows)
            after_commit_refresh(variant for _location, variant in rows)
    except IntegrityError as exc:
        # A movement id recorded for another item by a concurrent batch of the same source.
        raise Conflict(
            "A movement id of this batch was recorded at the same time by another batch; "
            "send the batch again.",
            code="movement_conflict",
        ) from exc
    return BatchResult(batch=batch, replayed=False)


def _replay(batch: MovementBatch, fingerprint: str) -> BatchResult:
    if batch.fingerprint != fingerprint:
        raise Conflict(
            f"Batch {batch.batch_id} was already received with different movements; "
            "use a new batch id.",
            code="batch_id_reused",
            extra={"batch_id": ["Already used for a different batch."]},
        )
    return BatchResult(batch=batch, replayed=True)
