"""Merging customers who turned out to be one person.

The survivor is the oldest profile. Everything that points at the merged customer follows it:
every model with a foreign key to ``Customer`` is found through Django's model metadata, so
later apps (carts, orders, messages) join in without a line here. A model whose rows must be
combined rather than moved (one row per customer and channel) defines a classmethod
``merge_customer_rows(survivor, merged)``. Profile fields: the newest non-empty value wins
(``field_times`` says when each was set); counters add up; first seen is the earliest, last
seen the latest; consent follows the newest decision per channel.
"""

from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from customers.models import PROFILE_FIELDS, Customer, CustomerMerge, PreferenceSource
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.services import outbox_emit

from .common import customer_lock

EPOCH = "0001-01-01T00:00:00+00:00"


def _json(value):
    import json

    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def customer_snapshot(customer: Customer) -> dict:
    """The profile as plain JSON (for audit rows and exports)."""
    data = {}
    for f in Customer._meta.concrete_fields:
        data[f.attname] = getattr(customer, f.attname)
    return _json(data)


def _field_time(customer: Customer, name: str) -> str:
    # A field never set through a service counts as set when the profile last changed.
    fallback = customer.updated_at.isoformat() if customer.updated_at else EPOCH
    return customer.field_times.get(name) or fallback


def _resolve_fields(survivor: Customer, merged: Customer) -> dict:
    changes = {}
    times = dict(survivor.field_times or {})
    for name in PROFILE_FIELDS:
        attname = Customer._meta.get_field(name).attname
        mine, theirs = getattr(survivor, attname), getattr(merged, attname)
        if theirs in ("", None):
            continue
        my_time, their_time = _field_time(survivor, name), _field_time(merged, name)
        take = mine in ("", None) or (their_time > my_time and theirs != mine)
        if take:
            setattr(survivor, attname, theirs)
            times[name] = their_time
        if mine != theirs:
            changes[name] = {
                "survivor": mine,
                "merged": theirs,
                "result": theirs if take else mine,
            }
    # A channel the customer chose beats one inferred; of two chosen, the newest.
    if merged.preferred_channel_source == PreferenceSource.CUSTOMER and (
        survivor.preferred_channel_source != PreferenceSource.CUSTOMER
        or _field_time(merged, "preferred_channel") > _field_time(survivor, "preferred_channel")
    ):
        if survivor.preferred_channel_id != merged.preferred_channel_id:
            changes["preferred_channel"] = {
                "survivor": survivor.preferred_channel_id,
                "merged": merged.preferred_channel_id,
                "result": merged.preferred_channel_id,
            }
        survivor.preferred_channel_id = merged.preferred_channel_id
        survivor.preferred_channel_source = PreferenceSource.CUSTOMER
        times["preferred_channel"] = _field_time(merged, "preferred_channel")
    survivor.field_times = times

    def earliest(a, b):
        return min(x for x in (a, b) if x is not None) if (a or b) else None

    def latest(a, b):
        return max(x for x in (a, b) if x is not None) if (a or b) else None

    for name, combine in (
        ("first_seen_at", earliest),
        ("last_seen_at", latest),
        ("last_purchase_at", latest),
    ):
        setattr(survivor, name, combine(getattr(survivor, name), getattr(merged, name)))
    if merged.lifetime_orders or merged.lifetime_revenue:
        changes["lifetime_orders"] = {
            "survivor": survivor.lifetime_orders,
            "merged": merged.lifetime_orders,
            "result": survivor.lifetime_orders + merged.lifetime_orders,
        }
        changes["lifetime_revenue"] = {
            "survivor": survivor.lifetime_revenue,
            "merged": merged.lifetime_revenue,
            "result": Decimal(survivor.lifetime_revenue) + Decimal(merged.lifetime_revenue),
        }
    survivor.lifetime_orders += merged.lifetime_orders
    survivor.lifetime_revenue = Decimal(survivor.lifetime_revenue) + Decimal(
        merged.lifetime_revenue
    )
    return _json(changes)


def customer_relations():
    """Every foreign key to ``Customer`` from any installed model: ``(model, field)``."""
    return [
        (rel.related_model, rel.field)
        for rel in Customer._meta.related_objects
        if (rel.one_to_many or rel.one_to_one) and rel.field.concrete
    ]


def _move_rows(survivor: Customer, merged: Customer) -> dict:
    moved = {}
    handled = set()
    for model, fk in customer_relations():
        handler = getattr(model, "merge_customer_rows", None)
        if handler is not None:
            if model in handled:
                continue
            handled.add(model)
            count = handler(survivor, merged)
        else:
            count = model._base_manager.filter(**{fk.name: merged}).update(**{fk.name: survivor})
        if count:
            moved[model._meta.label] = count
    return moved


def merge_locked(
    *, survivor: Customer, merged: Customer, reason: str, source: str = "", actor=None
) -> CustomerMerge:
    """Fold ``merged`` into ``survivor``; both must be locked by the caller (``customer_lock``)."""
    from .stats import preferred_channel_infer

    snapshot = customer_snapshot(merged)
    changes = _resolve_fields(survivor, merged)
    moved = _move_rows(survivor, merged)
    merged_id = merged.pk
    merged.delete()
    survivor.save()
    if survivor.preferred_channel_source == PreferenceSource.INFERRED:
        preferred_channel_infer(customer_ids=[survivor.pk])
        # Keep the instance current: callers return it, and a next merge saves it again.
        survivor.preferred_channel_id = (
            Customer.objects.filter(pk=survivor.pk)
            .values_list("preferred_channel_id", flat=True)
            .get()
        )
    record = CustomerMerge.objects.create(
        survivor=survivor,
        merged_customer_id=merged_id,
        merged_snapshot=snapshot,
        field_changes=changes,
        moved=moved,
        reason=reason[:200],
        source=source[:80],
        actor=actor if actor is not None and actor.is_authenticated else None,
        created_at=timezone.now(),
    )
    outbox_emit(
        type="customer.merged",
        subject_type="customer",
        subject_id=survivor.pk,
        payload={"survivor": survivor.pk, "merged": merged_id, "merge": record.pk},
    )
    return record


# How many customers one merge takes: staff pick them by hand, integrators name them.
MAX_MERGE = 20


def merge_survivor(customers):
    """The customer a merge keeps: the oldest profile (the first created; ties by id)."""
    return min(customers, key=lambda c: (c.created_at, c.pk))


@transaction.atomic
def customer_merge(
    *, customers, reason: str = "Merged by staff", source: str = "", actor=None
) -> tuple[Customer, list[CustomerMerge]]:
    """Merge the given customers (instances or ids) into the oldest of them."""
    ids = sorted({c.pk if isinstance(c, Customer) else int(c) for c in customers})
    if len(ids) < 2:
        raise ValidationFailed(
            "Choose at least two customers to merge.",
            extra={"customers": ["At least two different customers."]},
        )
    if len(ids) > MAX_MERGE:
        raise ValidationFailed(
            f"A merge takes at most {MAX_MERGE} customers; {len(ids)} were chosen.",
            code="too_many_customers",
            extra={"customers": [f"At most {MAX_MERGE}."]},
        )
    locked = customer_lock(ids)
    missing = sorted(set(ids) - {c.pk for c in locked})
    if missing:
        raise NotFound(
            f"No customer {', '.join(map(str, missing))} (merged or deleted meanwhile?).",
            extra={"customers": [f"Unknown customer {pk}." for pk in missing]},
        )
    erased = [c.pk for c in locked if c.erased_at is not None]
    if erased:
        raise Conflict(
            f"Customer {', '.join(map(str, erased))} was erased and cannot be merged.",
            code="customer_erased",
            extra={"customers": [f"Customer {pk} was erased." for pk in erased]},
        )
    survivor = merge_survivor(locked)
    others = sorted((c for c in locked if c.pk != survivor.pk), key=lambda c: (c.created_at, c.pk))
    records = [
        merge_locked(survivor=survivor, merged=other, reason=reason, source=source, actor=actor)
        for other in others
    ]
    return survivor, records
