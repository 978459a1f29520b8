"""Touchpoints: the events of every channel on one timeline per customer.

``touchpoints_ingest`` takes a batch of up to 1,000 events from an integrator, each with its
own ``event_id`` (unique per sender, so a replay adds nothing) and the identifiers the channel
knows the customer by. The whole batch is checked first and refused with every error by index
if one event is wrong; otherwise identities are resolved for all events at once, the events are
written in one insert, and the profile statistics move with them.
"""

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import connection, transaction
from django.utils import timezone

from customers.identifiers import parse_identifiers
from customers.models import Customer, Touchpoint, TouchpointKind
from customers.models import TouchpointKind as Kind
from customers.timeline_json import rendition_sql
from inventory.models import Location
from omni.exceptions import ValidationFailed
from omni.formats import parse_past_time
from omni.models import Channel

from .common import customer_lock, identifiers_lock
from .resolution import ResolveRequest, drop_blocked, identities_resolve, survivor_of
from .stats import Usage, order_key, stats_apply

MAX_EVENTS = 1000
KINDS = frozenset(k.value for k in TouchpointKind)


@dataclass(slots=True)
class Event:
    event_id: str
    kind: str
    channel_id: int
    occurred_at: datetime
    request: ResolveRequest
    location_id: int | None = None
    properties: dict = field(default_factory=dict)
    amount: Decimal | None = None


@dataclass
class IngestResult:
    received: int
    created: int
    duplicates: int
    customers: list = field(default_factory=list)  # per event: its customer id (None: duplicate)
    new_customers: int = 0
    merges: int = 0

    @property
    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "created": self.created,
            "duplicates": self.duplicates,
            "new_customers": self.new_customers,
            "merges": self.merges,
            "customers": self.customers,
        }


def _amount(properties: dict):
    raw = properties.get("amount")
    if raw is None:
        return None, None
    if isinstance(raw, bool):
        return None, "properties.amount must be a number."
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        return None, "properties.amount must be a number."
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
        return None, "properties.amount must be a positive number below 10^12."
    return amount.quantize(Decimal("0.01")), None


def _validate(events, now) -> list[Event]:
    if not isinstance(events, list) or not events:
        raise ValidationFailed(
            "A batch needs at least one event.", extra={"events": ["At least one event."]}
        )
    if len(events) > MAX_EVENTS:
        raise ValidationFailed(
            f"A batch holds at most {MAX_EVENTS:,} events; this one has {len(events):,}.",
            code="batch_too_large",
            extra={"events": [f"At most {MAX_EVENTS}."]},
        )
    channel_codes = {str(e.get("channel")) for e in events if isinstance(e, dict)}
    channels = {
        code: (pk, active)
        for code, pk, active in Channel.objects.filter(code__in=channel_codes).values_list(
            "code", "pk", "is_active"
        )
    }
    location_codes = {
        str(e["location"]) for e in events if isinstance(e, dict) and e.get("location")
    }
    locations = dict(Location.objects.filter(code__in=location_codes).values_list("code", "pk"))
    customer_problems = _customer_problems(
        {e.get("customer") for e in events if isinstance(e, dict) and _is_id(e.get("customer"))}
    )
    errors, parsed, seen = {}, [], {}
    for index, raw in enumerate(events):
        if not isinstance(raw, dict):
            errors[str(index)] = {"event": ["Must be an object."]}
            continue
        problems = {}
        event_id = raw.get("event_id")
        event_id = (
            str(event_id).strip()
            if isinstance(event_id, str | int) and not isinstance(event_id, bool)
            else ""
        )
        if not event_id:
            problems["event_id"] = ["Required: your id of this event."]
        elif len(event_id) > 100:
            problems["event_id"] = ["At most 100 characters."]
        elif event_id in seen:
            problems["event_id"] = [f"Repeats event {seen[event_id]} of this batch."]
        else:
            seen[event_id] = index
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            problems["kind"] = [f"Unknown kind {kind!r}; one of: {', '.join(sorted(KINDS))}."]
        code = raw.get("channel")
        channel = channels.get(str(code)) if code else None
        if channel is None:
            problems["channel"] = [f"Unknown channel {code}." if code else "Required."]
        elif not channel[1]:
            problems["channel"] = [f"Channel {code} is inactive."]
        occurred_at, time_error = parse_past_time(raw.get("occurred_at"), now)
        if time_error:
            problems["occurred_at"] = [time_error]
        location_id = None
        if raw.get("location"):
            location_id = locations.get(str(raw["location"]))
            if location_id is None:
                problems["location"] = [f"Unknown location {raw['location']}."]
        properties = raw.get("properties") or {}
        amount = None
        if not isinstance(properties, dict):
            problems["properties"] = ["Must be an object."]
        else:
            amount, amount_error = _amount(properties)
            if amount_error:
                problems["properties"] = [amount_error]
        customer_id = raw.get("customer")
        if customer_id is not None and not _is_id(customer_id):
            problems["customer"] = ["A customer id (a whole number)."]
            customer_id = None
        elif customer_id in customer_problems:
            problems["customer"] = [customer_problems[customer_id]]
        identifiers, identifier_errors = [], {}
        if raw.get("identifiers") is not None or customer_id is None:
            identifiers, identifier_errors = parse_identifiers(raw.get("identifiers"))
        problems.update(identifier_errors)
        if problems:
            errors[str(index)] = problems
            continue
        parsed.append(
            Event(
                event_id=event_id,
                kind=kind,
                channel_id=channel[0],
                occurred_at=occurred_at,
                request=ResolveRequest(identifiers, customer_id),
                location_id=location_id,
                properties=properties,
                amount=amount,
            )
        )
    if not errors:
        requests, empty = drop_blocked([e.request for e in parsed])
        for index in empty:
            errors[str(index)] = {
                "identifiers": ["Every identifier is blocked: nothing identifies the customer."]
            }
        for event, request in zip(parsed, requests, strict=True):
            event.request = request
    if errors:
        raise ValidationFailed(
            f"{len(errors)} of {len(events)} events are invalid; nothing was recorded.",
            code="invalid_batch",
            extra={"events": errors},
        )
    return parsed


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _customer_problems(ids) -> dict[int, str]:
    """What is wrong with the customer ids events name: unknown, or erased (a merged id is
    fine: it stands for its survivor)."""
    ids = set(ids)
    if not ids:
        return {}
    in_range = {pk for pk in ids if 0 < pk < 2**63}
    erased = dict(Customer.objects.filter(pk__in=in_range).values_list("pk", "erased_at"))
    problems = {}
    for customer_id in sorted(ids):
        if customer_id not in in_range:
            problems[customer_id] = f"Unknown customer {customer_id}."
            continue
        if customer_id not in erased:
            survivor = survivor_of(customer_id)
            if survivor is None:
                problems[customer_id] = f"Unknown customer {customer_id}."
                continue
            erased[customer_id] = (
                Customer.objects.filter(pk=survivor).values_list("erased_at", flat=True).get()
            )
        if erased[customer_id] is not None:
            problems[customer_id] = f"Customer {customer_id} was erased."
    return problems


_INSERT = """
    INSERT INTO {table} ({columns})
    SELECT t.customer_id, t.channel_id, t.kind, t.occurred_at, t.location_id, t.properties,
           s.source, t.event_id, s.received_at, {rendition}
    FROM (SELECT %s::varchar AS source, %s::timestamptz AS received_at) s,
         unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[], %s::bigint[],
                %s::jsonb[], %s::text[])
         AS t(customer_id, channel_id, kind, occurred_at, location_id, properties, event_id)
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING event_id
"""


def _rendition_sql() -> str:
    """Each event's timeline JSON (``customers.timeline_json``), written by the insert."""
    quote = connection.ops.quote_name
    return rendition_sql(
        quote(Channel._meta.db_table), quote(Location._meta.db_table), row="t", source="s.source"
    )


def _insert(events: list[Event], customer_ids: list[int], source: str, now) -> set[str]:
    """Insert the touchpoints, skipping events already recorded (a replay running at the same
    time); returns the event ids this call inserted, so that only those count in the stats.
    On PostgreSQL one ``INSERT ... SELECT FROM unnest(...)`` per 1,000 events, straight from
    the parsed events (no model instances on this hot path), which also writes each event's
    timeline JSON (``customers.timeline_json``)."""
    if connection.vendor != "postgresql":  # SQLite serialises writers: nothing can race
        Touchpoint.objects.bulk_create(
            [
                Touchpoint(
                    customer_id=customer_id,
                    channel_id=e.channel_id,
                    kind=e.kind,
                    occurred_at=e.occurred_at,
                    location_id=e.location_id,
                    properties=e.properties,
                    source=source,
                    event_id=e.event_id,
                    received_at=now,
                )
                for e, customer_id in zip(events, customer_ids, strict=True)
            ],
            batch_size=1000,
            ignore_conflicts=True,
        )
        return {e.event_id for e in events}
    meta = Touchpoint._meta
    names = [
        "customer",
        "channel",
        "kind",
        "occurred_at",
        "location",
        "properties",
        "source",
        "event_id",
        "received_at",
        "rendition",
    ]
    sql = _INSERT.format(
        table=connection.ops.quote_name(meta.db_table),
        columns=", ".join(connection.ops.quote_name(meta.get_field(n).column) for n in names),
        rendition=_rendition_sql(),
    )
    inserted = set()
    with connection.cursor() as cursor:
        for start in range(0, len(events), 1000):
            chunk = events[start : start + 1000]
            cursor.execute(
                sql,
                [
                    source,
                    now,
                    customer_ids[start : start + 1000],
                    [e.channel_id for e in chunk],
                    [e.kind for e in chunk],
                    [e.occurred_at for e in chunk],
                    [e.location_id for e in chunk],
                    [json.dumps(e.properties) for e in chunk],
                    [e.event_id for e in chunk],
                ],
            )
            inserted.update(row[0] for row in cursor.fetchall())
    return inserted


def _write(events: list[Event], customer_ids: list[int], source: str, now) -> set[str]:
    """Insert the touchpoints and move the statistics by those actually inserted; the
    customers must be locked. Returns the event ids inserted."""
    inserted = _insert(events, customer_ids, source, now)
    usage: dict[int, Usage] = {}
    channel_usage: dict[tuple[int, int], list] = {}
    for e, customer_id in zip(events, customer_ids, strict=True):
        if e.event_id not in inserted:
            continue
        if e.kind == Kind.ORDER_CANCELLED:
            continue  # not her activity (staff or the shop cancelled): see _taken_back
        add = usage.get(customer_id)
        if add is None:
            add = usage[customer_id] = Usage(first=e.occurred_at, last=e.occurred_at)
        else:
            add.first = min(add.first, e.occurred_at)
            add.last = max(add.last, e.occurred_at)
        if e.kind == Kind.PURCHASE:
            add.purchases += 1
            add.revenue += e.amount or 0
            add.last_purchase = max(filter(None, (add.last_purchase, e.occurred_at)))
        entry = channel_usage.get((customer_id, e.channel_id))
        if entry is None:
            channel_usage[(customer_id, e.channel_id)] = [1, e.occurred_at, e.occurred_at]
        else:
            entry[0] += 1
            entry[1] = min(entry[1], e.occurred_at)
            entry[2] = max(entry[2], e.occurred_at)
    for customer_id, (count, revenue) in _taken_back(
        [(c, e) for c, e in zip(customer_ids, events, strict=True) if e.event_id in inserted],
        source,
    ).items():
        add = usage.get(customer_id)
        if add is None:
            add = usage[customer_id] = Usage(first=None, last=None)
        add.purchases -= count
        add.revenue -= revenue
        add.cancelled = True
    stats_apply(usage=usage, channel_usage=channel_usage)
    return inserted


def _taken_back(recorded: list[tuple[int, Event]], source: str) -> dict[int, tuple[int, Decimal]]:
    """What order cancellations take back anew now that ``recorded`` (events of ``source``
    just inserted, with their customers) are in: ``{customer: (purchases, revenue)}``.

    A cancellation takes back the newest purchase of its order (``properties.order`` as
    text: 1001 and "1001" match) that no other cancellation took, as ``last_purchase_of``
    reads them, whichever arrives first: a cancellation recorded before its purchase takes
    it when it comes. One that finds none (the same order cancelled again under another
    event id, an order she never bought) takes nothing. The amount taken back is the
    purchase's. Customers whose new events are neither cancellations nor purchases of an
    order someone cancelled are not read.
    """
    keyed = [
        (customer_id, e, key)
        for customer_id, e in recorded
        if e.kind in (Kind.PURCHASE, Kind.ORDER_CANCELLED)
        and (key := order_key(e.properties)) is not None
    ]
    cancelling = {customer_id for customer_id, e, _key in keyed if e.kind == Kind.ORDER_CANCELLED}
    buying = {(customer_id, key) for customer_id, e, key in keyed if e.kind == Kind.PURCHASE}
    if buying:  # purchases of orders cancelled already (cancellations are few: one query)
        cancelled = {
            (customer_id, key)
            for customer_id, properties in Touchpoint.objects.filter(
                customer_id__in={customer_id for customer_id, _key in buying},
                kind=Kind.ORDER_CANCELLED,
            ).values_list("customer_id", "properties")
            if (key := order_key(properties)) is not None
        }
        cancelling |= {customer_id for customer_id, key in buying & cancelled}
    keys = defaultdict(set)  # the orders of each customer's new events
    for customer_id, _e, key in keyed:
        keys[customer_id].add(key)
    new_ids = {e.event_id for _customer_id, e, _key in keyed}
    purchases = defaultdict(list)  # (customer, order) -> [(new, amount)], newest first
    cancellations = Counter()  # (customer, order, new)
    history = (  # their purchases and cancellations, in one read of the timeline index
        Touchpoint.objects.filter(
            customer_id__in=cancelling, kind__in=(Kind.PURCHASE, Kind.ORDER_CANCELLED)
        )
        .order_by("customer_id", "-occurred_at", "-id")
        .values_list("customer_id", "kind", "properties", "source", "event_id")
    )
    for customer_id, kind, properties, event_source, event_id in history:
        key = order_key(properties)
        if key not in keys[customer_id]:
            continue
        new = event_source == source and event_id in new_ids
        if kind == Kind.ORDER_CANCELLED:
            cancellations[customer_id, key, new] += 1
        else:
            purchases[customer_id, key].append((new, _amount(properties)[0] or Decimal(0)))
    result = {}
    for customer_id in cancelling:
        count, revenue = 0, Decimal(0)
        for key in keys[customer_id]:
            every = purchases[customer_id, key]
            before = [amount for new, amount in every if not new]
            cancelled_before = cancellations[customer_id, key, False]
            taken_before = before[: min(cancelled_before, len(before))]
            cancelled_now = cancelled_before + cancellations[customer_id, key, True]
            taken_now = [amount for _new, amount in every[: min(cancelled_now, len(every))]]
            count += len(taken_now) - len(taken_before)
            revenue += sum(taken_now) - sum(taken_before)
        if count or revenue:
            result[customer_id] = (count, revenue)
    return result


def touchpoints_ingest(*, source: str, events: list, now: datetime | None = None) -> IngestResult:
    """Record a batch of events (see the module); all or nothing."""
    now = now or timezone.now()
    parsed = _validate(events, now)
    with transaction.atomic():
        identifiers_lock(i.key for e in parsed for i in e.request.identifiers)
        # Under the identifier locks a replay of the same events waits for the first and then
        # finds its events here. One that shares no identifier with it (events naming their
        # customer by id) may race past this read: the insert skips those events and the
        # stats count only what it inserted.
        recorded = set(
            Touchpoint.objects.filter(
                source=source, event_id__in=[e.event_id for e in parsed]
            ).values_list("event_id", flat=True)
        )
        fresh = [e for e in parsed if e.event_id not in recorded]
        result = IngestResult(received=len(parsed), created=0, duplicates=len(recorded))
        if not fresh:
            result.customers = [None] * len(parsed)
            return result
        # New customers were first and last seen at their events (the stats set them), not
        # when the batch arrived.
        resolution = identities_resolve(
            requests=[e.request for e in fresh], source=source, seen_at=now, stamp_seen=False
        )
        inserted = _write(fresh, resolution.customer_ids, source, now)
        result.created = len(inserted)
        result.duplicates = len(parsed) - len(inserted)
        result.new_customers = len(resolution.created)
        result.merges = len(resolution.merges)
        by_event = {
            e.event_id: customer_id
            for e, customer_id in zip(fresh, resolution.customer_ids, strict=True)
            if e.event_id in inserted
        }
        result.customers = [by_event.get(e.event_id) for e in parsed]
    return result


def touchpoint_record(
    *,
    customer: Customer,
    channel: Channel,
    kind: str,
    source: str,
    event_id: str,
    occurred_at: datetime | None = None,
    location=None,
    properties: dict | None = None,
) -> None:
    """Put one event of a known customer on her timeline (used by other services: consent
    changes, conversation messages, and later orders). A repeated ``event_id`` adds nothing."""
    if kind not in KINDS:
        raise ValueError(f"Unknown touchpoint kind {kind!r}")
    now = timezone.now()
    with transaction.atomic():
        customer_lock([customer.pk])
        if Touchpoint.objects.filter(source=source, event_id=event_id).exists():
            return
        properties = properties or {}
        amount, amount_error = _amount(properties)
        if amount_error:
            raise ValueError(amount_error)
        event = Event(
            event_id=event_id,
            kind=kind,
            channel_id=channel.pk,
            occurred_at=occurred_at or now,
            request=ResolveRequest([], customer.pk),
            location_id=location.pk if location is not None else None,
            properties=properties,
            amount=amount,
        )
        _write([event], [customer.pk], source, now)
