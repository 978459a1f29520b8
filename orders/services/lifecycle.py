"""The order state machine and the changes of status: ready for pickup, hand-over, shipment,
cancellation, and the arrival (or loss) of the transfer a pickup waits for.

    placed ────────────► ready ──► collected ─┐
      │  ▲  (pickup)       │                  │
      │  └── awaiting_transfer                ├─► returned (everything came back)
      ├──► shipped (ship) ────────────────────┤
      └──► cancelled ◄── ready, awaiting_transfer
    completed (in store, at once) ────────────┘

Every change is checked against ``TRANSITIONS`` first: a change the machine does not allow is
refused with ``invalid_transition`` and changes nothing.
"""

import hmac

from django.db import transaction
from django.utils import timezone

from customers.models import TouchpointKind
from inventory.models import Reservation, ReservationStatus, Transfer, TransferStatus
from inventory.services import (
    ReserveLine,
    stock_consume,
    stock_release,
    stock_reserve,
    transfer_cancel,
)
from omni.exceptions import Conflict, InsufficientStock, OmniError, ValidationFailed
from omni.services import outbox_emit
from orders.models import (
    Fulfilment,
    FulfilmentMethod,
    Order,
    OrderLine,
    OrderStatus,
    OrderStatusChange,
)

from .common import actor_or_none, order_lock, order_row_lock, purchase_recorded, timeline

S = OrderStatus
TRANSITIONS: dict[str, dict[str, tuple[str, ...]]] = {
    # from status -> {to status: the fulfilment methods that may take this step}
    S.PLACED: {
        S.READY: (FulfilmentMethod.PICKUP,),
        S.AWAITING_TRANSFER: (FulfilmentMethod.PICKUP,),
        S.SHIPPED: (FulfilmentMethod.SHIP,),
        S.CANCELLED: (FulfilmentMethod.SHIP, FulfilmentMethod.PICKUP),
    },
    S.AWAITING_TRANSFER: {
        S.PLACED: (FulfilmentMethod.PICKUP,),
        S.CANCELLED: (FulfilmentMethod.PICKUP,),
    },
    S.READY: {
        S.COLLECTED: (FulfilmentMethod.PICKUP,),
        S.CANCELLED: (FulfilmentMethod.PICKUP,),
    },
    S.COLLECTED: {S.RETURNED: (FulfilmentMethod.PICKUP,)},
    S.SHIPPED: {S.RETURNED: (FulfilmentMethod.SHIP,)},
    S.COMPLETED: {S.RETURNED: (FulfilmentMethod.IN_STORE,)},
    S.RETURNED: {},
    S.CANCELLED: {},
}
VERBS = {
    S.READY: "be marked ready",
    S.COLLECTED: "be handed over",
    S.SHIPPED: "ship",
    S.CANCELLED: "be cancelled",
    S.RETURNED: "be returned",
    S.PLACED: "go back to placed",
    S.AWAITING_TRANSFER: "wait for a transfer",
    S.COMPLETED: "be completed",
}


def allowed(order: Order, to_status: str) -> bool:
    return order.fulfilment_method in TRANSITIONS.get(order.status, {}).get(to_status, ())


def require_transition(order: Order, to_status: str) -> None:
    if not allowed(order, to_status):
        method = FulfilmentMethod(order.fulfilment_method).label.lower()
        raise Conflict(
            f"Order {order.number} is {OrderStatus(order.status).label.lower()} ({method}); "
            f"it cannot {VERBS[to_status]}.",
            code="invalid_transition",
            extra={"status": [f"{order.status} -> {to_status} is not allowed."]},
        )


def transition(order: Order, to_status: str, *, source: str, actor=None, note="", at=None):
    """Move a locked order to ``to_status`` and record it in the history."""
    require_transition(order, to_status)
    at = at or timezone.now()
    OrderStatusChange.objects.create(
        order=order,
        from_status=order.status,
        to_status=to_status,
        at=at,
        source=source[:80],
        actor=actor_or_none(actor),
        note=(note or "")[:300],
    )
    order.status = to_status
    fields = ["status", "updated_at"]
    if to_status == S.READY:
        order.ready_at = at
        fields.append("ready_at")
    if to_status in (S.COLLECTED, S.SHIPPED, S.CANCELLED, S.COMPLETED):
        order.closed_at = at
        fields.append("closed_at")
    order.save(update_fields=fields)
    return order


def _payload(order: Order) -> dict:
    return {
        "number": order.number,
        "channel": order.channel.code,
        "customer": order.customer_id,
        "status": order.status,
        "fulfilment_method": order.fulfilment_method,
        "store": order.store.code if order.store_id else None,
        "total": str(order.total),
        "currency": order.currency,
    }


def emit(order: Order, type_: str, **extra) -> None:
    outbox_emit(
        type=type_, subject_type="order", subject_id=order.number, payload=_payload(order) | extra
    )


@transaction.atomic
def order_mark_ready(*, order: Order, source: str, actor=None, location=None) -> Order:
    """The pickup is prepared at its store: the customer is told (``order.pickup_ready``
    event, which campaigns turn into a message). With ``location`` (the store page's store),
    an order for another store is refused."""
    order = order_lock(order)
    _require_store(order, location)
    require_transition(order, S.READY)
    transition(order, S.READY, source=source, actor=actor)
    emit(order, "order.pickup_ready", pickup_code_hint=order.pickup_code[-2:])
    return order


def _require_store(order: Order, location) -> None:
    if location is not None and order.store_id != location.pk:
        where = order.store.code if order.store_id else "delivery"
        raise ValidationFailed(
            f"Order {order.number} is for {where}, not {location.code}.",
            code="wrong_store",
            extra={"store": [f"Order {order.number} is collected at {where}."]},
        )


@transaction.atomic
def order_collect(*, order: Order, code: str, source: str, actor=None, location=None) -> Order:
    """Hand a ready pickup over: the code must match, the stock held for it leaves (a sale
    at the store), and the customer's timeline shows the pickup."""
    order = order_lock(order)
    _require_store(order, location)
    require_transition(order, S.COLLECTED)
    given = "".join(ch for ch in str(code or "") if ch.isdigit())
    if not given or not hmac.compare_digest(given, order.pickup_code):
        raise ValidationFailed(
            f"That is not the pickup code of order {order.number}.",
            code="wrong_pickup_code",
            extra={"code": ["Wrong pickup code."]},
        )
    now = timezone.now()
    movements = stock_consume(reference=order.number, source="orders", actor=actor)
    Fulfilment.objects.create(
        order=order,
        method=FulfilmentMethod.PICKUP,
        location=order.store,
        units=-sum(m.quantity for m in movements),
        created_at=now,
        actor=actor_or_none(actor),
    )
    transition(order, S.COLLECTED, source=source, actor=actor, at=now)
    timeline(order, TouchpointKind.PICKUP, "collected", location=order.store, at=now)
    emit(order, "order.collected")
    return order


@transaction.atomic
def order_ship(
    *, order: Order, source: str, actor=None, carrier: str = "", tracking_number: str = ""
) -> Order:
    """The parcel leaves: the stock held for the order is consumed at each location it was
    held at, one fulfilment per location."""
    order = order_lock(order)
    require_transition(order, S.SHIPPED)
    now = timezone.now()
    movements = stock_consume(reference=order.number, source="orders", actor=actor)
    units: dict[int, int] = {}
    for movement in movements:
        units[movement.location_id] = units.get(movement.location_id, 0) - movement.quantity
    Fulfilment.objects.bulk_create(
        [
            Fulfilment(
                order=order,
                method=FulfilmentMethod.SHIP,
                location_id=location_id,
                units=count,
                carrier=(carrier or "")[:60],
                tracking_number=(tracking_number or "")[:100],
                created_at=now,
                actor=actor_or_none(actor),
            )
            for location_id, count in sorted(units.items())
        ]
    )
    transition(order, S.SHIPPED, source=source, actor=actor, at=now)
    emit(order, "order.shipped", carrier=carrier, tracking_number=tracking_number)
    return order


@transaction.atomic
def order_cancel(*, order: Order, source: str, actor=None, reason: str = "") -> Order:
    """Call an open order off: the stock held for it is released, and a transfer still to
    ship for it is cancelled (one already on its way arrives as ordinary stock)."""
    # The transfers the order waits for are locked before the order: receiving one locks it,
    # then the stock at the store, then the order (``transfer_arrived``); cancelling locks the
    # order, then the same stock. Taking the transfers first makes a receipt and a cancel of
    # the same order queue up instead of deadlocking.
    transfers = _transfers_lock(order.pk)
    order = order_lock(order)
    require_transition(order, S.CANCELLED)
    reason = (reason or "").strip()
    if len(reason) > 300:
        raise ValidationFailed("The reason is too long.", extra={"reason": ["At most 300."]})
    stock_release(reference=order.number)
    transition(order, S.CANCELLED, source=source, actor=actor, note=reason)
    for transfer in transfers:
        if transfer.status == TransferStatus.REQUESTED:
            transfer_cancel(transfer=transfer, actor=actor_or_none(actor))
    if order.needs_attention:
        order.needs_attention = False
        order.attention_reason = ""
        order.save(update_fields=["needs_attention", "attention_reason", "updated_at"])
    _take_back_purchase(order, reason)
    emit(order, "order.cancelled", reason=reason)
    return order


def _take_back_purchase(order: Order, reason: str) -> None:
    """The cancellation on the customer's timeline, taking back what the order's purchase
    added to her counters (lifetime orders and revenue, last purchase). Only where that
    purchase was recorded (the order had its customer when placed)."""
    placed = purchase_recorded(order)
    if placed is None:
        return
    timeline(
        order,
        TouchpointKind.ORDER_CANCELLED,
        "cancelled",
        at=order.closed_at,  # the time of the cancellation in the order's history
        properties={
            "amount": placed.get("amount", str(order.total)),
            "currency": order.currency,
            **({"reason": reason} if reason else {}),
        },
    )


def _transfers_lock(order_pk: int) -> list:
    """Lock the transfers bringing stock for an order's lines, in primary-key order."""
    ids = set(
        OrderLine.objects.filter(order_id=order_pk, transfer__isnull=False).values_list(
            "transfer_id", flat=True
        )
    )
    if not ids:
        return []
    return list(Transfer.objects.select_for_update().filter(pk__in=ids).order_by("pk"))


def _fully_held(order: Order) -> bool:
    """Every line of the order has all its units held for it."""
    held: dict[str, int] = {}
    for line_reference, quantity in Reservation.objects.filter(
        reference=order.number, status=ReservationStatus.ACTIVE
    ).values_list("line_reference", "quantity"):
        held[line_reference] = held.get(line_reference, 0) + quantity
    return all(held.get(line.reference, 0) >= line.quantity for line in order.lines.all())


def _orders_of_transfer(transfer):
    numbers = set(
        OrderLine.objects.filter(transfer=transfer).values_list("order__number", flat=True)
    )
    return Order.objects.filter(number__in=numbers).order_by("pk")


def transfer_arrived(*, transfer, received: dict[int, int]) -> None:
    """A transfer a pickup waits for was received at its store: the lines it brought are
    reserved there for the order (pinned), and the order is placed again, ready to prepare.
    What cannot be held (received short, or sold meanwhile) leaves the order waiting with a
    flag for staff; the receipt itself always stands."""
    for order in _orders_of_transfer(transfer):
        order = order_row_lock(order.pk)
        if order.status != S.AWAITING_TRANSFER:
            continue
        lines = list(order.lines.filter(transfer=transfer).select_related("variant"))
        try:
            with transaction.atomic():
                stock_reserve(
                    channel=order.channel,
                    reference=order.number,
                    lines=[
                        ReserveLine(
                            variant=line.variant,
                            quantity=line.transfer_quantity,
                            location=order.store,
                            line_reference=line.reference,
                        )
                        for line in lines
                    ],
                )
        except InsufficientStock as exc:
            _flag(order, f"Transfer {transfer.number} arrived short: {exc.message}"[:200])
            continue
        except OmniError as exc:  # e.g. the item was retired meanwhile: the receipt stands
            _flag(order, f"Transfer {transfer.number} could not be held: {exc.message}"[:200])
            continue
        # Back to placed only once every unit is held at the store: another transfer still
        # on its way, cancelled, or received short leaves the order waiting (flagged).
        if not _fully_held(order):
            continue
        transition(order, S.PLACED, source="transfers", note=f"{transfer.number} received")
        emit(order, "order.transfer_arrived", transfer=transfer.number)


def transfer_lost(*, transfer) -> None:
    """A transfer a pickup waited for was cancelled: staff decide (source again or cancel)."""
    for order in _orders_of_transfer(transfer):
        order = order_row_lock(order.pk)
        if order.status == S.AWAITING_TRANSFER:
            _flag(order, f"Transfer {transfer.number} was cancelled.")


def _flag(order: Order, reason: str) -> None:
    order.needs_attention = True
    order.attention_reason = reason
    order.save(update_fields=["needs_attention", "attention_reason", "updated_at"])
    emit(order, "order.needs_attention", reason=reason)
