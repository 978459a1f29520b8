"""Returns in any store: the goods come back to the location that takes them, back on its
shelf (restock) or written off, with the refund given."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from customers.models import TouchpointKind
from inventory.models import Location
from inventory.services import stock_return
from inventory.services.common import positive_quantity, require_active_location
from omni.exceptions import Conflict, OmniError, ValidationFailed
from orders.models import (
    DONE_STATUSES,
    Order,
    OrderLine,
    OrderStatus,
    Return,
    ReturnDisposition,
    ReturnLine,
)

from .common import actor_or_none, money, order_lock, save_with_unique_number, timeline
from .lifecycle import emit, transition


@dataclass
class ReturnLineInput:
    line: object  # the order line's number, or its SKU
    quantity: object
    disposition: str = ReturnDisposition.RESTOCK


def _match(lines: list[OrderLine], value) -> OrderLine:
    text = str(value).strip()
    for line in lines:
        if text == str(line.line_number) or text.upper() == line.sku:
            return line
    raise ValidationFailed(
        f"The order has no line {text}.", extra={"line": [f"No line {text} on this order."]}
    )


@transaction.atomic
def return_create(
    *,
    order: Order,
    location: Location,
    lines: list[ReturnLineInput],
    source: str,
    refund_amount=None,
    reason: str = "",
    actor=None,
) -> Return:
    """Take goods of a fulfilled order back at ``location`` (any store, whichever channel
    sold them). Restocked lines go back on that location's shelf (a return movement); written
    off ones do not. The refund defaults to the lines' price and never passes what is left of
    the order's total. Everything returned: the order is returned."""
    order = order_lock(order)
    if order.status not in DONE_STATUSES:
        hint = "cancel it instead" if order.is_open else "nothing is left to return"
        raise Conflict(
            f"Order {order.number} is {order.get_status_display().lower()}; {hint}.",
            code="not_returnable",
            extra={"order": ["Only collected, shipped or completed orders take returns."]},
        )
    require_active_location(location)
    reason = (reason or "").strip()
    if len(reason) > 200:
        raise ValidationFailed("The reason is too long.", extra={"reason": ["At most 200."]})
    if not lines:
        raise ValidationFailed("Say what comes back.", extra={"lines": ["At least one line."]})
    order_lines = list(order.lines.select_related("variant").order_by("line_number"))
    errors, codes, messages, taken, wanted = {}, set(), [], {}, []
    for index, given in enumerate(lines):
        try:
            line = _match(order_lines, given.line)
            quantity = positive_quantity(given.quantity)
            if given.disposition not in ReturnDisposition.values:
                raise ValidationFailed(
                    f"Unknown disposition {given.disposition!r}.",
                    extra={"disposition": [f"One of: {', '.join(ReturnDisposition.values)}."]},
                )
            left = line.quantity - line.returned_quantity - taken.get(line.pk, 0)
            if quantity > left:
                raise ValidationFailed(
                    f"Line {line.line_number} ({line.sku}) can take back {left} more.",
                    code="too_many_returned",
                    extra={"quantity": [f"At most {left}."]},
                )
        except OmniError as exc:
            errors[str(index)] = exc.extra or {"line": [exc.message]}
            codes.add(exc.code)
            messages.append(exc.message)
            continue
        taken[line.pk] = taken.get(line.pk, 0) + quantity
        wanted.append((line, quantity, given.disposition))
    if errors:
        # The first line's own sentence for people (it names the line); lines that only ask
        # for too much say so in the code programs read.
        raise ValidationFailed(
            f"The return was not taken: {messages[0]}"
            + (f" ({len(errors)} lines are wrong.)" if len(errors) > 1 else ""),
            code="too_many_returned" if codes == {"too_many_returned"} else None,
            extra={"lines": errors},
        )
    value = sum((line.unit_price * quantity for line, quantity, _ in wanted), start=Decimal("0"))
    left = order.total - order.refunded_total
    refund = value if refund_amount in (None, "") else money(refund_amount, "refund_amount")
    if refund > min(value, left):
        raise ValidationFailed(
            f"The refund can be at most {min(value, left)} {order.currency}.",
            code="refund_too_high",
            extra={"refund_amount": [f"At most {min(value, left)}."]},
        )
    now = timezone.now()
    record = Return(
        order=order,
        location=location,
        reason=reason,
        refund_amount=refund,
        created_at=now,
        source=source[:80],
        actor=actor_or_none(actor),
    )
    save_with_unique_number(record, "R")
    ReturnLine.objects.bulk_create(
        [
            ReturnLine(return_record=record, order_line=line, quantity=q, disposition=d)
            for line, q, d in wanted
        ]
    )
    for line_pk, quantity in taken.items():
        OrderLine.objects.filter(pk=line_pk).update(
            returned_quantity=F("returned_quantity") + quantity
        )
    for line, quantity, disposition in wanted:
        if disposition == ReturnDisposition.RESTOCK:
            stock_return(
                location=location,
                variant=line.variant,
                quantity=quantity,
                channel=order.channel,
                source="returns",
                actor=actor_or_none(actor),
                reference=record.number,
            )
    order.refunded_total += refund
    order.save(update_fields=["refunded_total", "updated_at"])
    everything = all(
        line.returned_quantity + taken.get(line.pk, 0) == line.quantity for line in order_lines
    )
    if everything and order.status != OrderStatus.RETURNED:
        transition(order, OrderStatus.RETURNED, source=source, actor=actor, note=record.number)
    timeline(
        order,
        TouchpointKind.RETURN,
        f"return:{record.number}",
        location=location,
        at=now,
        properties={
            "return": record.number,
            "refund": str(refund),
            "currency": order.currency,
            "items": sum(q for _, q, _ in wanted),
        },
    )
    emit(order, "order.returned", **{"return": record.number, "refund": str(refund)})
    return record
