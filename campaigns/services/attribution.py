"""Attribution of orders to campaign messages, and the conversions behind lift.

An order is credited to the campaign message its customer last *touched* before placing it:
the last click on a tracked link, or the last delivery (its send time when the backend does
not report deliveries), per the ``attribute_on`` rule of the message's channel. The touch
counts only inside the campaign's attribution window on that channel (an
``AttributionWindow`` row, else ``Campaign.attribution_window_hours``). One order, one
attribution (``Attribution.order`` is one-to-one, inserted with ``ON CONFLICT DO NOTHING``), so
re-runs and concurrent runs add nothing twice. Cancelled orders are never credited (an order
cancelled after it was credited loses its attribution at the next run).

The click an order follows is the *latest click at or before the order* (``placed_at``), never
a click after it, found set-based per order and message:

- a message is a candidate when its first click (``clicked_at``) is at or before the order;
- its touch time is its latest click (``last_clicked_at``; ``clicked_at`` for a message
  clicked before that column was kept) when that is at or before the order: the common case,
  read from the message row alone;
- otherwise the customer clicked it again after ordering, and the touch time is the latest of
  its ``link_clicked`` touchpoints (source ``omni:campaigns``, ``properties.message`` naming
  the message; one per click) at or before the order, read backwards along the customer's
  timeline index; without such a touchpoint (an erased customer's timeline is gone) the first
  click stands in, the one click known to precede the order.

Per order, the latest touch inside its window is a ``MAX`` over the customer's messages, and
the message credited is the newest one touched at that moment.

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
    CharField,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
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
from campaigns.services.tracking import SOURCE as TRACKING_SOURCE
from customers.models import Touchpoint, TouchpointKind
from omni.models import Channel
from orders.models import Order, OrderStatus

DEFAULT_LOOKBACK = timedelta(days=7)
BATCH_SIZE = 2000

# Messages that reached the backend: only those can be clicked or delivered.
TOUCHABLE_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED)


def _delivery_channels() -> list[int]:
    """The channels whose rule attributes on deliveries (a channel without a rule attributes on
    clicks, the model's default)."""
    return list(
        MessagingRule.objects.filter(attribute_on=AttributeOn.DELIVERY).values_list(
            "channel_id", flat=True
        )
    )


def _basis_expression(on_delivery: list[int]):
    """``basis`` over ``Message``: what an order must follow on the message's channel."""
    if not on_delivery:
        return Value(AttributeOn.CLICK.value)
    return Case(
        When(channel_id__in=on_delivery, then=Value(AttributeOn.DELIVERY.value)),
        default=Value(AttributeOn.CLICK.value),
    )


def _click_before(placed_at: str):
    """The latest click on the message at or before the outer query's ``placed_at`` (an
    expression over ``Message``; NULL when its first click came after): ``last_clicked_at``
    when it is not later, else the latest ``link_clicked`` touchpoint of the message not
    later, else its first click (see the module's docstring)."""
    before = OuterRef(placed_at)
    logged = (
        Touchpoint.objects.filter(
            customer_id=OuterRef("customer_id"),
            kind=TouchpointKind.LINK_CLICKED,
            occurred_at__lte=OuterRef(before),
            source=TRACKING_SOURCE,
        )
        # Compared as text: a touchpoint of another shape never makes the query fail.
        .annotate(message_ref=KeyTextTransform("message", "properties"))
        .filter(message_ref=Cast(OuterRef("pk"), output_field=CharField()))
        .order_by("-occurred_at", "-id")  # the customer's timeline index, backwards
        .values("occurred_at")[:1]
    )
    last_click = Coalesce("last_clicked_at", "clicked_at")
    return Case(
        When(clicked_at__gt=before, then=None),
        When(Q(last_clicked_at__lte=before) | Q(last_clicked_at__isnull=True), then=last_click),
        default=Coalesce(Subquery(logged), F("clicked_at")),
        output_field=DateTimeField(),
    )


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


def _touches(on_delivery: list[int], placed_at: str = "placed_at"):
    """Messages touched at or before the outer query's ``placed_at`` (an order's), annotated
    with ``touched_at`` (the latest such touch) and ``window_ends_at``."""
    clicked = _click_before(placed_at)
    if on_delivery:
        touched = Case(
            When(channel_id__in=on_delivery, then=Coalesce("delivered_at", "sent_at")),
            default=clicked,
            output_field=DateTimeField(),
        )
    else:
        touched = clicked
    return (
        Message.objects.filter(status__in=TOUCHABLE_STATUSES, channel__isnull=False)
        .annotate(touched_at=touched)
        .filter(touched_at__lte=OuterRef(placed_at))
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
    on_delivery = _delivery_channels()
    touches = _touches(on_delivery).filter(
        customer_id=OuterRef("customer_id"), window_ends_at__gte=OuterRef("placed_at")
    )
    # The latest touch, then the message touched then (the newest on a tie). Two steps: an
    # ORDER BY on ``touched_at``, which reads the order's ``placed_at``, is refused by SQLite
    # in a subquery (``make run``); an aggregate and a comparison are not.
    latest = touches.order_by().values("customer_id").annotate(latest=Max("touched_at"))
    credited = (
        Order.objects.filter(
            # Every channel: the (channel, placed_at) index serves the range.
            channel_id__in=list(Channel.objects.values_list("pk", flat=True)),
            placed_at__gte=since,
            placed_at__lte=now,
            customer_id__isnull=False,
        )
        .exclude(status=OrderStatus.CANCELLED)
        .filter(~Exists(Attribution.objects.filter(order_id=OuterRef("pk"))))
        .annotate(touched_at=Subquery(latest.values("latest")))
        .filter(touched_at__isnull=False)
        .annotate(
            message_id=Subquery(
                touches.filter(touched_at=OuterRef("touched_at")).order_by("-pk").values("pk")[:1]
            )
        )
        .order_by("pk")
        .values_list("pk", "message_id", "touched_at", "total", "currency", "placed_at")
    )
    # An order cancelled after it was credited loses its attribution.
    Attribution.objects.filter(
        # Every campaign: the (campaign, placed_at) index serves the range.
        campaign_id__in=list(Campaign.objects.values_list("pk", flat=True)),
        placed_at__gte=since,
        order__status=OrderStatus.CANCELLED,
    ).delete()
    basis = _basis_expression(on_delivery)
    added = 0
    batch: list = []
    for row in credited.iterator(chunk_size=BATCH_SIZE):
        batch.append(row)
        if len(batch) >= BATCH_SIZE:
            added += _insert(batch, basis, now)
            batch = []
    if batch:
        added += _insert(batch, basis, now)
    enrolment_conversions_mark(since=since, now=now)
    return added


def _insert(rows, basis, now) -> int:
    """Insert the attributions of one batch of ``(order, message, touched_at, total,
    currency, placed_at)``; an order credited meanwhile by another run keeps its
    attribution."""
    messages = {
        m["pk"]: m
        for m in Message.objects.filter(pk__in={message_id for _, message_id, *_ in rows})
        .annotate(basis=basis)
        .values("pk", "campaign_id", "step_id", "channel_id", "basis")
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
                touched_at=touched_at,
                revenue=total,
                currency=currency,
                placed_at=placed_at,
                attributed_at=now,
            )
            for order_id, message_id, touched_at, total, currency, placed_at in rows
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
    marked = 0
    for campaign_id, hours in Campaign.objects.values_list("pk", "attribution_window_hours"):
        # A conversion whose order was cancelled since is looked for again. Converted at or
        # after ``since`` means enrolled at most the window before: the (campaign,
        # enrolled_at) index bounds the read.
        Enrolment.objects.filter(
            campaign_id=campaign_id,
            enrolled_at__gte=since - timedelta(hours=hours),
            converted_at__gte=since,
            converted_order__status=OrderStatus.CANCELLED,
        ).update(converted_at=None, converted_order=None, revenue=0)
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
