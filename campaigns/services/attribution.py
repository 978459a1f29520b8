"""Attribution of orders to campaign messages, and the conversions behind lift.

An order is credited to the campaign message its customer last *touched* before placing it:
the last click on a tracked link, or the last delivery (its send time when the backend does
not report deliveries), per the ``attribute_on`` rule of the message's channel. The touch
counts only inside the campaign's attribution window on that channel (an
``AttributionWindow`` row, else ``Campaign.attribution_window_hours``). One order, one
attribution (``Attribution.order`` is one-to-one, inserted with ``ON CONFLICT DO NOTHING``), so
re-runs and concurrent runs add nothing twice. Cancelled orders are never credited (an order
cancelled after it was credited loses its attribution at the next run).

Conversions measure lift: an enrolment, treated or held out, converts with its customer's
first order placed after ``enrolled_at`` and within the campaign's attribution window (not
cancelled: a conversion whose order is cancelled later is looked for again). Both
groups are measured the same way, messages or not, so the holdout's rate is the baseline.

Both are set-based: the window arithmetic runs in SQL (hours as interval values, one
``CASE`` branch per campaign and channel; campaigns are few), the conversions are one
``UPDATE ... SET ... = (subquery)`` per campaign.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import (
    Case,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.models import (
    AttributeOn,
    Attribution,
    AttributionWindow,
    Campaign,
    Enrolment,
    Message,
    MessageStatus,
    MessagingRule,
)
from orders.models import Order, OrderStatus

DEFAULT_LOOKBACK = timedelta(days=7)
BATCH_SIZE = 2000

# Messages that reached the backend: only those can be clicked or delivered.
TOUCHABLE_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED)


def _touch_expressions():
    """``(touched_at, basis)`` expressions over ``Message``: the click or the delivery the rule
    of each message's channel names (a channel without a rule attributes on clicks, the
    model's default)."""
    on_delivery = list(
        MessagingRule.objects.filter(attribute_on=AttributeOn.DELIVERY).values_list(
            "channel_id", flat=True
        )
    )
    delivered = Coalesce("delivered_at", "sent_at")
    if not on_delivery:
        return F("clicked_at"), Value(AttributeOn.CLICK.value)
    touched = Case(
        When(channel_id__in=on_delivery, then=delivered),
        default=F("clicked_at"),
        output_field=DateTimeField(),
    )
    basis = Case(
        When(channel_id__in=on_delivery, then=Value(AttributeOn.DELIVERY.value)),
        default=Value(AttributeOn.CLICK.value),
    )
    return touched, basis


def _window_expression():
    """The attribution window of each message, by its campaign and channel, as an interval."""
    branches = [
        When(
            campaign_id=campaign_id,
            channel_id=channel_id,
            then=Value(timedelta(hours=hours), output_field=DurationField()),
        )
        for campaign_id, channel_id, hours in AttributionWindow.objects.values_list(
            "campaign_id", "channel_id", "hours"
        )
    ]
    branches += [
        When(
            campaign_id=campaign_id,
            then=Value(timedelta(hours=hours), output_field=DurationField()),
        )
        for campaign_id, hours in Campaign.objects.values_list("pk", "attribution_window_hours")
    ]
    # A campaign created after the branches were read has no window yet: nothing is credited
    # to it until the next run.
    return Case(*branches, default=None, output_field=DurationField())


def _touches():
    """Messages annotated with ``touched_at``, ``basis`` and ``window_ends_at``."""
    touched, basis = _touch_expressions()
    return (
        Message.objects.filter(status__in=TOUCHABLE_STATUSES, channel__isnull=False)
        .annotate(touched_at=touched, basis=basis)
        .filter(touched_at__isnull=False)
        .annotate(
            window_ends_at=ExpressionWrapper(
                F("touched_at") + _window_expression(), output_field=DateTimeField()
            )
        )
    )


@transaction.atomic
def attributions_compute(*, since: datetime | None = None, now: datetime | None = None) -> int:
    """Credit the orders placed since ``since`` (default: the last 7 days) to the campaign
    message each customer last touched inside its window; then mark the enrolments that
    converted (``enrolment_conversions_mark``). Returns how many attributions were added."""
    now = now or timezone.now()
    since = since or now - DEFAULT_LOOKBACK
    touches = _touches()
    last_touch = (
        touches.filter(
            customer_id=OuterRef("customer_id"),
            touched_at__lte=OuterRef("placed_at"),
            window_ends_at__gte=OuterRef("placed_at"),
        )
        .order_by("-touched_at", "-pk")
        .values("pk")[:1]
    )
    credited = (
        Order.objects.filter(
            placed_at__gte=since,
            placed_at__lte=now,
            customer_id__isnull=False,
        )
        .exclude(status=OrderStatus.CANCELLED)
        .filter(~Exists(Attribution.objects.filter(order_id=OuterRef("pk"))))
        .annotate(message_id=Subquery(last_touch))
        .filter(message_id__isnull=False)
        .order_by("pk")
        .values_list("pk", "message_id", "total", "currency", "placed_at")
    )
    # An order cancelled after it was credited loses its attribution.
    Attribution.objects.filter(placed_at__gte=since, order__status=OrderStatus.CANCELLED).delete()
    added = 0
    batch: list = []
    for row in credited.iterator(chunk_size=BATCH_SIZE):
        batch.append(row)
        if len(batch) >= BATCH_SIZE:
            added += _insert(batch, touches, now)
            batch = []
    if batch:
        added += _insert(batch, touches, now)
    enrolment_conversions_mark(since=since, now=now)
    return added


def _insert(rows, touches, now) -> int:
    """Insert the attributions of one batch of ``(order, message, total, currency,
    placed_at)``; an order credited meanwhile by another run keeps its attribution."""
    messages = {
        m["pk"]: m
        for m in touches.filter(pk__in={message_id for _, message_id, *_ in rows}).values(
            "pk", "campaign_id", "step_id", "channel_id", "touched_at", "basis"
        )
    }
    Attribution.objects.bulk_create(
        [
            Attribution(
                order_id=order_id,
                message_id=message_id,
                campaign_id=messages[message_id]["campaign_id"],
                step_id=messages[message_id]["step_id"],
                channel_id=messages[message_id]["channel_id"],
                basis=messages[message_id]["basis"],
                touched_at=messages[message_id]["touched_at"],
                revenue=total,
                currency=currency,
                placed_at=placed_at,
                attributed_at=now,
            )
            for order_id, message_id, total, currency, placed_at in rows
            if message_id in messages
        ],
        ignore_conflicts=True,
    )
    return Attribution.objects.filter(
        order_id__in=[order_id for order_id, *_ in rows], attributed_at=now
    ).count()


@transaction.atomic
def enrolment_conversions_mark(
    *, since: datetime | None = None, now: datetime | None = None
) -> int:
    """Mark the enrolments (treated and held out) whose customer placed an order after
    ``enrolled_at`` and within the campaign's attribution window: ``converted_at``,
    ``converted_order`` and ``revenue`` of the first such order. Enrolments already marked
    are left alone; only enrolments whose window reaches past ``since`` are looked at.
    Returns how many were marked."""
    now = now or timezone.now()
    since = since or now - DEFAULT_LOOKBACK
    # A conversion whose order was cancelled since is looked for again.
    Enrolment.objects.filter(
        converted_at__gte=since, converted_order__status=OrderStatus.CANCELLED
    ).update(converted_at=None, converted_order=None, revenue=0)
    marked = 0
    for campaign_id, hours in Campaign.objects.values_list("pk", "attribution_window_hours"):
        window = Value(timedelta(hours=hours), output_field=DurationField())
        # placed_at <= enrolled_at + window, written on the order's side so the interval
        # arithmetic has typed operands on every database.
        first_order = (
            Order.objects.annotate(
                window_opens_at=ExpressionWrapper(
                    F("placed_at") - window, output_field=DateTimeField()
                )
            )
            .filter(
                customer_id=OuterRef("customer_id"),
                placed_at__gt=OuterRef("enrolled_at"),
                placed_at__lte=now,
                window_opens_at__lte=OuterRef("enrolled_at"),
            )
            .exclude(status=OrderStatus.CANCELLED)
            .order_by("placed_at", "pk")
        )
        marked += (
            Enrolment.objects.filter(
                Q(campaign_id=campaign_id, converted_at__isnull=True),
                enrolled_at__gte=since - timedelta(hours=hours),
                enrolled_at__lte=now,
            )
            .filter(Exists(first_order))
            .update(
                converted_order_id=Subquery(first_order.values("pk")[:1]),
                converted_at=Subquery(first_order.values("placed_at")[:1]),
                revenue=Subquery(first_order.values("total")[:1]),
            )
        )
    return marked
