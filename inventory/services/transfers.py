"""Transfers between locations: requested (stock held at the source), shipped (in transit),
received (on the destination's shelf)."""

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from inventory.models import (
    MovementKind,
    Reservation,
    ReservationKind,
    ReservationStatus,
    Transfer,
    TransferLine,
    TransferStatus,
)
from inventory.signals import transfer_cancelled, transfer_received
from omni.exceptions import Conflict, OmniError, ValidationFailed
from omni.services import outbox_emit

from .common import (
    Move,
    after_commit_refresh,
    positive_quantity,
    require_active_location,
    stock_level_lock,
    variant_of,
    variants_by_sku,
    write_moves,
)
from .reservations import (
    TRANSFER_REFERENCE_PREFIX,
    ReserveLine,
    _release,
    stock_reserve,
)

SOURCE = "transfers"


def _reference(transfer: Transfer) -> str:
    return f"{TRANSFER_REFERENCE_PREFIX}{transfer.number}"


def _lines(lines) -> list[tuple]:
    if not lines:
        raise ValidationFailed(
            "A transfer needs at least one line.", extra={"lines": ["Required."]}
        )
    errors, resolved, seen = {}, [], {}
    given = [line.get("variant") or line.get("sku") or "" for line in lines]
    variants = variants_by_sku(given)
    for index, (line, value) in enumerate(zip(lines, given, strict=True)):
        try:
            variant = variant_of(variants, value)
            quantity = positive_quantity(line.get("quantity"))
        except OmniError as exc:
            errors[str(index)] = exc.extra or {"line": [exc.message]}
            continue
        if variant.pk in seen:
            errors[str(index)] = {"sku": [f"{variant.sku} is already on line {seen[variant.pk]}."]}
            continue
        seen[variant.pk] = index
        resolved.append((variant, quantity))
    if errors:
        raise ValidationFailed("Some transfer lines are invalid.", extra={"lines": errors})
    return resolved


@transaction.atomic
def transfer_request(
    *,
    from_location,
    to_location,
    lines: list[dict],
    reference: str = "",
    note: str = "",
    expected_at=None,
    actor=None,
) -> Transfer:
    """Ask ``from_location`` to send stock to ``to_location``; the units are reserved at the
    source at once (all lines or none), so they are not sold before they leave."""
    if from_location.pk == to_location.pk:
        raise ValidationFailed(
            "A transfer goes between two different locations.",
            extra={"to_location": ["Must differ from the source."]},
        )
    require_active_location(from_location, "from_location")
    require_active_location(to_location, "to_location")
    resolved = _lines(lines)
    now = timezone.now()
    transfer = Transfer.objects.create(
        number=f"pending-{now.timestamp()}",
        from_location=from_location,
        to_location=to_location,
        reference=(reference or "")[:120],
        note=(note or "")[:200],
        expected_at=expected_at,
        requested_at=now,
        requested_by=actor if getattr(actor, "pk", None) else None,
    )
    transfer.number = f"TR-{transfer.pk:06d}"
    transfer.save(update_fields=["number"])
    TransferLine.objects.bulk_create(
        [TransferLine(transfer=transfer, variant=v, quantity=q) for v, q in resolved]
    )
    stock_reserve(
        channel=None,
        kind=ReservationKind.TRANSFER,
        reference=_reference(transfer),
        lines=[
            ReserveLine(variant=v, quantity=q, location=from_location, line_reference=v.sku)
            for v, q in resolved
        ],
    )
    outbox_emit(
        type="inventory.transfer_requested",
        subject_type="transfer",
        subject_id=transfer.number,
        payload=_payload(transfer),
    )
    return transfer


def _lock(transfer: Transfer, *expected: str) -> Transfer:
    locked = (
        Transfer.objects.select_for_update(of=("self",))
        .select_related("from_location", "to_location")
        .get(pk=transfer.pk)
    )
    if locked.status not in expected:
        raise Conflict(
            f"Transfer {locked.number} is {locked.get_status_display().lower()}; "
            f"this needs it {' or '.join(expected)}.",
            code="invalid_transition",
        )
    return locked


def _quantities(transfer, given: dict | None, field: str, limit_field: str) -> dict[int, int]:
    """``{sku: quantity}`` from the caller, checked against the lines (default: the limit)."""
    lines = {line.variant.sku: line for line in transfer.lines.select_related("variant")}
    if given is None:
        return {line.pk: getattr(line, limit_field) for line in lines.values()}
    errors, result = {}, {}
    for sku, quantity in given.items():
        line = lines.get(sku)
        if line is None:
            errors[sku] = [f"{sku} is not on transfer {transfer.number}."]
            continue
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            errors[sku] = ["A whole number, 0 or more."]
            continue
        if quantity > getattr(line, limit_field):
            errors[sku] = [f"At most {getattr(line, limit_field)}."]
            continue
        result[line.pk] = quantity
    if errors:
        raise ValidationFailed(f"Check the {field} quantities.", extra={field: errors})
    for line in lines.values():
        result.setdefault(line.pk, 0)
    return result


@transaction.atomic
def transfer_ship(*, transfer: Transfer, quantities: dict | None = None, actor=None) -> Transfer:
    """The goods leave the source: ``quantities`` by SKU (default: everything requested).
    What is not shipped is released at the source."""
    transfer = _lock(transfer, TransferStatus.REQUESTED)
    shipped = _quantities(transfer, quantities, "shipped", "quantity")
    if not any(shipped.values()):
        raise ValidationFailed("Nothing would ship; cancel the transfer instead.")
    reference = _reference(transfer)
    lines = list(transfer.lines.select_related("variant"))
    # Every line's stock row at the source at once, in the one lock order: releasing and
    # shipping line by line would lock them in line order and deadlock with a reservation.
    stock_level_lock([(transfer.from_location_id, line.variant_id) for line in lines])
    for line in lines:
        quantity = shipped[line.pk]
        held = list(
            Reservation.objects.filter(
                reference=reference,
                line_reference=line.variant.sku,
                status=ReservationStatus.ACTIVE,
            )
        )
        if sum(r.quantity for r in held) != line.quantity:
            raise Conflict(
                f"The stock held for {line.variant.sku} on {transfer.number} changed; "
                "check its reservations.",
                code="reservation_changed",
            )
        _release(reservations=held)
        if quantity:
            write_moves(
                [
                    Move(
                        location_id=transfer.from_location_id,
                        variant_id=line.variant_id,
                        kind=MovementKind.TRANSFER_OUT,
                        quantity=-quantity,
                        reference=transfer.number,
                    )
                ],
                source=SOURCE,
                actor=actor,
            )
        line.shipped_quantity = quantity
    TransferLine.objects.bulk_update(lines, ["shipped_quantity"])
    transfer.status = TransferStatus.SHIPPED
    transfer.shipped_at = timezone.now()
    transfer.save(update_fields=["status", "shipped_at"])
    outbox_emit(
        type="inventory.transfer_shipped",
        subject_type="transfer",
        subject_id=transfer.number,
        payload=_payload(transfer),
    )
    return transfer


@transaction.atomic
def transfer_receive(*, transfer: Transfer, quantities: dict | None = None, actor=None) -> Transfer:
    """The goods arrive: ``quantities`` by SKU (default: everything shipped). A line received
    short keeps the difference visible on the transfer (lost in transit)."""
    transfer = _lock(transfer, TransferStatus.SHIPPED)
    require_active_location(transfer.to_location, "to_location")
    received = _quantities(transfer, quantities, "received", "shipped_quantity")
    lines = list(transfer.lines.all())
    moves = [
        Move(
            location_id=transfer.to_location_id,
            variant_id=line.variant_id,
            kind=MovementKind.TRANSFER_IN,
            quantity=received[line.pk],
            reference=transfer.number,
        )
        for line in lines
        if received[line.pk]
    ]
    write_moves(moves, source=SOURCE, actor=actor)
    for line in lines:
        line.received_quantity = received[line.pk]
    TransferLine.objects.bulk_update(lines, ["received_quantity"])
    transfer.status = TransferStatus.RECEIVED
    transfer.received_at = timezone.now()
    transfer.save(update_fields=["status", "received_at"])
    after_commit_refresh(line.variant_id for line in lines)
    transfer_received.send(
        sender=Transfer,
        transfer=transfer,
        received={line.variant_id: received[line.pk] for line in lines},
    )
    outbox_emit(
        type="inventory.transfer_received",
        subject_type="transfer",
        subject_id=transfer.number,
        payload=_payload(transfer),
    )
    return transfer


@transaction.atomic
def transfer_cancel(*, transfer: Transfer, actor=None) -> Transfer:
    """A transfer not shipped yet is called off; the stock held at the source is released."""
    transfer = _lock(transfer, TransferStatus.REQUESTED)
    _release(
        reservations=Reservation.objects.filter(
            reference=_reference(transfer), status=ReservationStatus.ACTIVE
        )
    )
    transfer.status = TransferStatus.CANCELLED
    transfer.save(update_fields=["status"])
    transfer_cancelled.send(sender=Transfer, transfer=transfer)
    outbox_emit(
        type="inventory.transfer_cancelled",
        subject_type="transfer",
        subject_id=transfer.number,
        payload=_payload(transfer),
    )
    return transfer


def in_transit(*, to_location=None, variant_ids=None) -> dict[tuple[int, int], int]:
    """Units shipped and not yet received, by ``(destination, variant)``."""
    queryset = TransferLine.objects.filter(
        transfer__status=TransferStatus.SHIPPED, shipped_quantity__gt=F("received_quantity")
    )
    if to_location is not None:
        queryset = queryset.filter(transfer__to_location=to_location)
    if variant_ids is not None:
        queryset = queryset.filter(variant_id__in=variant_ids)
    return {
        (row["transfer__to_location_id"], row["variant_id"]): row["units"]
        for row in queryset.values("transfer__to_location_id", "variant_id").annotate(
            units=Sum(F("shipped_quantity") - F("received_quantity"))
        )
    }


def _payload(transfer: Transfer) -> dict:
    return {
        "number": transfer.number,
        "from": transfer.from_location.code,
        "to": transfer.to_location.code,
        "status": transfer.status,
        "reference": transfer.reference,
    }
