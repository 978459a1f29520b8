"""Trigger detection: every running campaign's new candidates become enrolments, set-based.

For each campaign one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` whose ``SELECT`` is an
ORM queryset over the trigger's rows (idle carts, product views, store purchases, waiting
subscriptions whose variant is back, pickups marked ready, lapsed customers, a segment),
filtered by the audience, the consent the campaign needs and the re-entry cooldown, and
grouped to one subject per customer where a trigger could yield several. The unique
constraint on (campaign, customer, subject key) makes repeated or concurrent runs add
nothing twice; a per-campaign advisory lock keeps two runs from racing the cooldown.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    CharField,
    DateTimeField,
    DecimalField,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    Value,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from campaigns.models import (
    BackInStockSubscription,
    Campaign,
    Enrolment,
    EnrolmentStatus,
    Purpose,
    Trigger,
)
from catalog.models import Variant
from customers.models import ConsentState, ConsentStatus, Customer, Touchpoint, TouchpointKind
from inventory.models import ChannelAvailability
from omni.models import OutboxEvent
from orders.models import Cart, CartLine, CartStatus, FulfilmentMethod, Order, OrderStatus

from .common import (
    advisory_lock,
    campaign_channel_ids,
    holdout_expression,
    rules_by_channel,
    running_campaigns,
)

log = logging.getLogger(__name__)

# The enrolment columns the SELECT fills, in this order.
COLUMNS = (
    "campaign_id",
    "customer_id",
    "subject_key",
    "cart_id",
    "order_id",
    "variant_id",
    "sales_channel_id",
    "store_id",
    "holdout",
    "status",
    "exit_reason",
    "next_position",
    "due_at",
    "deferrals",
    "last_deferral",
    "enrolled_at",
    "revenue",
)
# Trigger subjects a candidate query may leave out (filled with NULL).
SUBJECTS = ("cart", "order", "variant", "sales_channel", "store")


@dataclass
class DetectionResult:
    enrolled: dict = field(default_factory=dict)  # campaign name -> new enrolments
    campaigns: int = 0

    @property
    def total(self) -> int:
        return sum(self.enrolled.values())


def _null():
    return Cast(Value(None), BigIntegerField())


def _subject(prefix: str, expression):
    return Concat(Value(prefix), Cast(expression, CharField()), output_field=CharField())


def _audience(qs, campaign: Campaign, now, channel_ids, customer="customer_id"):
    """Filters every trigger shares: a live customer, the segment, consent, cooldown."""
    qs = qs.filter(**{f"{customer}__isnull": False})
    if campaign.segment_id:
        from customers.segments import segment_queryset

        qs = qs.filter(
            **{f"{customer}__in": segment_queryset(campaign.segment, now=now).values("pk")}
        )
    if campaign.purpose == Purpose.MARKETING:
        # Contactable: opted in on a channel the campaign may send on.
        qs = qs.filter(
            Exists(
                ConsentState.objects.filter(
                    customer_id=OuterRef(customer),
                    channel_id__in=channel_ids,
                    status=ConsentStatus.OPTED_IN,
                )
            )
        )
    if campaign.reentry_cooldown_days:
        qs = qs.exclude(
            Exists(
                Enrolment.objects.filter(
                    campaign_id=campaign.pk,
                    customer_id=OuterRef(customer),
                    enrolled_at__gte=now - timedelta(days=campaign.reentry_cooldown_days),
                )
            )
        )
    return qs


def _carts(campaign: Campaign, now, channel_ids):
    idle_since = now - timedelta(minutes=campaign.idle_minutes)
    qs = Cart.objects.filter(
        status=CartStatus.OPEN,
        last_activity_at__lte=idle_since,
        last_activity_at__gte=campaign.lookback_start(now),
        customer__erased_at__isnull=True,
    ).filter(Exists(CartLine.objects.filter(cart=OuterRef("pk"))))
    if campaign.sales_channel_id:
        qs = qs.filter(channel_id=campaign.sales_channel_id)
    qs = _audience(qs, campaign, now, channel_ids)
    return (
        qs.values("customer_id")
        .annotate(e_cart=Max("pk"))
        .annotate(e_customer=F("customer_id"), e_subject_key=_subject("cart:", Max("pk")))
    )


def _browse(campaign: Campaign, now, channel_ids):
    since = campaign.lookback_start(now)
    qs = Touchpoint.objects.filter(
        kind=TouchpointKind.PRODUCT_VIEW,
        occurred_at__gte=since,
        occurred_at__lte=now - timedelta(minutes=campaign.idle_minutes),
        customer__erased_at__isnull=True,
    )
    if campaign.sales_channel_id:
        qs = qs.filter(channel_id=campaign.sales_channel_id)
    # Views without a cart: no cart touched and nothing bought since the look-back began.
    qs = qs.exclude(
        Exists(
            Cart.objects.filter(customer_id=OuterRef("customer_id"), last_activity_at__gte=since)
        )
    ).exclude(
        Exists(Order.objects.filter(customer_id=OuterRef("customer_id"), placed_at__gte=since))
    )
    qs = _audience(qs, campaign, now, channel_ids)
    return (
        qs.values("customer_id")
        .annotate(e_last=Max("pk"))
        .annotate(e_customer=F("customer_id"), e_subject_key=_subject("browse:", Max("pk")))
    )


def _store_purchases(campaign: Campaign, now, channel_ids):
    qs = Order.objects.filter(
        placed_at__gte=campaign.lookback_start(now),
        customer__erased_at__isnull=True,
    ).exclude(status=OrderStatus.CANCELLED)
    qs = qs.filter(Q(fulfilment_method=FulfilmentMethod.IN_STORE) | Q(channel__kind="store_pos"))
    if campaign.sales_channel_id:
        qs = qs.filter(channel_id=campaign.sales_channel_id)
    qs = _audience(qs, campaign, now, channel_ids)
    return (
        qs.values("customer_id")
        .annotate(e_order=Max("pk"))
        .annotate(e_customer=F("customer_id"), e_subject_key=_subject("order:", Max("pk")))
    )


def _pickups_ready(campaign: Campaign, now, channel_ids):
    ready = OutboxEvent.objects.filter(
        type="order.pickup_ready", occurred_at__gte=campaign.lookback_start(now)
    ).values("subject_id")
    qs = Order.objects.filter(
        number__in=ready,
        status=OrderStatus.READY,
        fulfilment_method=FulfilmentMethod.PICKUP,
        customer__erased_at__isnull=True,
    )
    if campaign.sales_channel_id:
        qs = qs.filter(channel_id=campaign.sales_channel_id)
    qs = _audience(qs, campaign, now, channel_ids)
    return qs.annotate(
        e_customer=F("customer_id"),
        e_subject_key=_subject("pickup:", F("pk")),
        e_order=F("pk"),
        e_store=F("store_id"),
        e_sales_channel=F("channel_id"),
    )


def _back_in_stock(campaign: Campaign, now, channel_ids):
    qs = BackInStockSubscription.objects.filter(
        notified_at__isnull=True, customer__erased_at__isnull=True
    ).filter(
        Exists(
            ChannelAvailability.objects.filter(
                variant_id=OuterRef("variant_id"),
                channel_id=OuterRef("channel_id"),
                quantity__gte=campaign.min_quantity,
            )
        )
    )
    if campaign.sales_channel_id:
        qs = qs.filter(channel_id=campaign.sales_channel_id)
    qs = _audience(qs, campaign, now, channel_ids)
    return qs.annotate(
        e_customer=F("customer_id"),
        e_subject_key=_subject("stock:", F("pk")),
        e_variant=F("variant_id"),
        e_sales_channel=F("channel_id"),
    )


def _win_back(campaign: Campaign, now, channel_ids):
    lapsed = now - timedelta(days=campaign.winback_days)
    qs = Customer.objects.filter(
        erased_at__isnull=True,
        last_purchase_at__lte=lapsed,
        last_purchase_at__gt=lapsed - timedelta(hours=campaign.lookback_hours),
    )
    qs = _audience(qs, campaign, now, channel_ids, customer="pk")
    # A new purchase changes lifetime_orders: the next lapse is a new subject.
    return qs.annotate(e_customer=F("pk"), e_subject_key=_subject("lapse:", F("lifetime_orders")))


def _broadcast(campaign: Campaign, now, channel_ids):
    at = campaign.broadcast_at
    if at is None or at > now or at < campaign.lookback_start(now):
        return None
    qs = Customer.objects.filter(erased_at__isnull=True)
    qs = _audience(qs, campaign, now, channel_ids, customer="pk")
    key = f"broadcast:{int(at.timestamp())}"
    return qs.annotate(e_customer=F("pk"), e_subject_key=Value(key, output_field=CharField()))


CANDIDATES = {
    Trigger.CART_ABANDONED: _carts,
    Trigger.BROWSE_ABANDONED: _browse,
    Trigger.STORE_PURCHASE: _store_purchases,
    Trigger.PICKUP_READY: _pickups_ready,
    Trigger.BACK_IN_STOCK: _back_in_stock,
    Trigger.WIN_BACK: _win_back,
    Trigger.BROADCAST: _broadcast,
}


def candidates_sql(campaign: Campaign, now, rules=None):
    """The SELECT of a campaign's new enrolments as ``(columns, sql, params)``: the enrolment
    columns it fills, in its order. None when there is nothing to look at now."""
    rules = rules if rules is not None else rules_by_channel()
    qs = CANDIDATES[campaign.trigger](campaign, now, campaign_channel_ids(campaign, rules))
    if qs is None:
        return None
    first = min(campaign.steps.all(), key=lambda s: s.position)
    annotations = {}
    for name in SUBJECTS:
        if f"e_{name}" not in qs.query.annotations:
            annotations[f"e_{name}"] = _null()
    qs = qs.annotate(
        **annotations,
        e_campaign_id=Value(campaign.pk, output_field=BigIntegerField()),
        e_holdout=holdout_expression(campaign, "e_customer"),
        e_status=Value(EnrolmentStatus.ACTIVE.value, output_field=CharField()),
        e_exit_reason=Value("", output_field=CharField()),
        e_next_position=Value(1, output_field=IntegerField()),
        e_due_at=Value(now + timedelta(minutes=first.delay_minutes), output_field=DateTimeField()),
        e_deferrals=Value(0, output_field=IntegerField()),
        e_last_deferral=Value("", output_field=CharField()),
        e_enrolled_at=Value(now, output_field=DateTimeField()),
        e_revenue=Value(0, output_field=DecimalField(max_digits=14, decimal_places=2)),
    )
    names = {f"e_{column.removesuffix('_id')}": column for column in COLUMNS}
    names["e_campaign_id"] = names.pop("e_campaign")
    query = qs.values(*names).query
    selected = list(query.values_select) + list(query.annotation_select)
    if sorted(selected) != sorted(names):
        raise AssertionError(f"Unexpected columns {selected}")
    sql, params = query.sql_with_params()
    # Pick the columns by alias: the compiler orders a grouped SELECT its own way.
    quote = connection.ops.quote_name
    outer = f"SELECT {', '.join(quote(n) for n in names)} FROM ({sql}) AS candidates"
    return list(names.values()), outer, params


def _insert(columns: list[str], sql: str, params) -> int:
    columns = ", ".join(connection.ops.quote_name(c) for c in columns)
    table = connection.ops.quote_name(Enrolment._meta.db_table)
    if connection.vendor == "sqlite":
        statement = f"INSERT OR IGNORE INTO {table} ({columns}) {sql}"
    else:
        statement = f"INSERT INTO {table} ({columns}) {sql} ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return max(cursor.rowcount, 0)


def _fill_subjects(campaign: Campaign, now) -> None:
    """Complete this run's new enrolments where the SELECT could not (set-based): the variant
    a browse was about, the subscriptions used. (A cart's or an order's channel and store are
    read from the cart or order when needed, not copied.)"""
    fresh = Enrolment.objects.filter(campaign=campaign, enrolled_at=now)
    if campaign.trigger == Trigger.BROWSE_ABANDONED:
        # The subject is "browse:<id of the last view>"; its SKU is in the view's
        # properties. This run's new rows only: a bounded batch.
        rows = list(fresh.values_list("pk", "subject_key"))
        views = dict(
            Touchpoint.objects.filter(
                pk__in=[int(key.split(":", 1)[1]) for _, key in rows]
            ).values_list("pk", KT("properties__sku"))
        )
        skus = {sku for sku in views.values() if sku}
        variants = dict(Variant.objects.filter(sku__in=skus).values_list("sku", "pk"))
        updates = []
        for pk, key in rows:
            variant_id = variants.get(views.get(int(key.split(":", 1)[1])))
            if variant_id:
                updates.append(Enrolment(pk=pk, variant_id=variant_id))
        Enrolment.objects.bulk_update(updates, ["variant"], batch_size=2000)
    elif campaign.trigger == Trigger.BACK_IN_STOCK:
        # Each subscription is used once: by the enrolment it just made.
        BackInStockSubscription.objects.filter(notified_at__isnull=True).filter(
            Exists(
                fresh.filter(
                    customer_id=OuterRef("customer_id"),
                    subject_key=_subject("stock:", OuterRef("pk")),
                )
            )
        ).update(notified_at=now)


@transaction.atomic
def campaign_trigger_detect(*, campaign: Campaign, now=None, rules=None) -> int:
    """Enrol a campaign's new candidates. Returns how many enrolments it added."""
    now = now or timezone.now()
    advisory_lock("detect", campaign.pk)
    built = candidates_sql(campaign, now, rules)
    if built is None:
        return 0
    added = _insert(*built)
    if added and campaign.trigger in (Trigger.BROWSE_ABANDONED, Trigger.BACK_IN_STOCK):
        _fill_subjects(campaign, now)
    return added


def triggers_detect(*, now=None, progress=None) -> DetectionResult:
    """Run detection for every running campaign (the 5-minute task)."""
    now = now or timezone.now()
    rules = rules_by_channel()
    result = DetectionResult()
    for campaign in running_campaigns(now):
        added = campaign_trigger_detect(campaign=campaign, now=now, rules=rules)
        result.enrolled[campaign.name] = added
        result.campaigns += 1
        if progress:
            progress(campaign, added)
        log.info("Campaign %s: %d new enrolments", campaign.name, added)
    return result
