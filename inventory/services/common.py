"""The primitives every stock service uses: locking stock rows and writing the ledger."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from catalog.models import Variant
from catalog.validators import normalize_sku
from inventory.models import Location, StockLevel, StockMovement
from omni.exceptions import NotFound, ValidationFailed

BATCH = 2000
# The most units one movement, count line, reservation or transfer line may carry: far above
# any real quantity, far below the database's integers (a larger one would fail there, not here).
MAX_QUANTITY = 1_000_000


@dataclass
class Move:
    """One ledger line to write: ``quantity`` is signed (positive in, negative out)."""

    location_id: int
    variant_id: int
    kind: str
    quantity: int
    reference: str = ""
    reason: str = ""
    channel_id: int | None = None
    idempotency_key: str | None = None
    occurred_at: datetime | None = None
    extra: dict = field(default_factory=dict)


def pairs_filter(pairs) -> Q:
    """``(location_id, variant_id)`` pairs as one filter: two IN lists when the pairs are every
    location with every variant (a reservation's candidates), else one IN list per location."""
    pairs = set(pairs)
    locations = {location_id for location_id, _ in pairs}
    variants = {variant_id for _, variant_id in pairs}
    if len(pairs) == len(locations) * len(variants):
        return Q(location_id__in=sorted(locations), variant_id__in=sorted(variants))
    by_location = defaultdict(set)
    for location_id, variant_id in pairs:
        by_location[location_id].add(variant_id)
    query = Q(pk__in=[])
    for location_id, variant_ids in sorted(by_location.items()):
        query |= Q(location_id=location_id, variant_id__in=sorted(variant_ids))
    return query


def stock_level_lock(pairs, *, create_missing: bool = False) -> dict[tuple[int, int], StockLevel]:
    """Lock the stock rows of ``pairs`` in primary-key order (the one lock order for stock).

    With ``create_missing`` the rows that do not exist yet are then created (empty) and locked
    too, so that a receipt at a new location has a row; new rows take the highest keys, so
    the order holds. Returns the rows by ``(location, variant)``.
    """
    pairs = sorted(set(pairs))
    rows = _lock_existing(pairs)
    if create_missing:
        missing = [pair for pair in pairs if pair not in rows]
        if missing:
            StockLevel.objects.bulk_create(
                [StockLevel(location_id=loc, variant_id=var) for loc, var in missing],
                ignore_conflicts=True,
                batch_size=BATCH,
            )
            rows.update(_lock_existing(missing))
    return rows


def _lock_existing(pairs) -> dict[tuple[int, int], StockLevel]:
    rows = {}
    for start in range(0, len(pairs), BATCH * 5):
        chunk = pairs[start : start + BATCH * 5]
        if connection.vendor == "postgresql":
            if not connection.in_atomic_block:  # as select_for_update() refuses
                raise TransactionManagementError("Stock rows are locked only inside a transaction.")
            # Joined with the pairs as arrays, each pair one probe of the unique index. As IN
            # lists, the planner reads every row of a location (a store's rows lie on every
            # page of the table) and filters them: 0.3 s for a POS batch of 9,000 items.
            table = connection.ops.quote_name(StockLevel._meta.db_table)
            locked = StockLevel.objects.raw(
                f"SELECT s.* FROM {table} s JOIN unnest(%s::bigint[], %s::bigint[]) "
                "AS p(location_id, variant_id) ON s.location_id = p.location_id "
                "AND s.variant_id = p.variant_id ORDER BY s.id FOR UPDATE OF s",
                [[loc for loc, _ in chunk], [var for _, var in chunk]],
            )
        else:
            locked = (
                StockLevel.objects.select_for_update().filter(pairs_filter(chunk)).order_by("pk")
            )
        rows.update({(row.location_id, row.variant_id): row for row in locked})
    return rows


def bulk_increment(rows_deltas: dict[int, dict[str, int]]) -> None:
    """Add deltas to counters of stock rows, set-based: ``{pk: {"on_hand": d, "reserved": d}}``.

    On PostgreSQL one ``UPDATE ... FROM (VALUES ...)`` per batch; elsewhere one ``F()`` update
    per row. The rows must be locked by the caller.
    """
    items = [
        (pk, d.get("on_hand", 0), d.get("reserved", 0)) for pk, d in sorted(rows_deltas.items())
    ]
    items = [item for item in items if item[1] or item[2]]
    if not items:
        return
    now = timezone.now()
    if connection.vendor != "postgresql":
        for pk, on_hand, reserved in items:
            StockLevel.objects.filter(pk=pk).update(
                on_hand=F("on_hand") + on_hand, reserved=F("reserved") + reserved, updated_at=now
            )
        return
    table = StockLevel._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            values = ", ".join(["(%s::bigint, %s::integer, %s::integer)"] * len(chunk))
            params = [value for item in chunk for value in item]
            cursor.execute(
                f'UPDATE "{table}" AS s SET on_hand = s.on_hand + v.on_hand, '
                "reserved = s.reserved + v.reserved, updated_at = %s "
                f"FROM (VALUES {values}) AS v(id, on_hand, reserved) WHERE s.id = v.id",
                [now, *params],
            )


def write_moves(
    moves: list[Move], *, source: str, actor=None, now=None, rows=None, returning=True
) -> list[StockMovement]:
    """Write ledger lines and move ``on_hand`` with them, in the caller's transaction.

    Locks the stock rows (creating those missing) unless the caller passes the ``rows`` it
    locked already with ``stock_level_lock``. Returns the lines written; with ``returning``
    False nothing, and on PostgreSQL the lines go in without a model object each (a POS batch
    of 10,000).
    """
    if not moves:
        return []
    now = now or timezone.now()
    if rows is None:
        rows = stock_level_lock([(m.location_id, m.variant_id) for m in moves], create_missing=True)
    deltas = defaultdict(lambda: {"on_hand": 0})
    for move in moves:
        deltas[rows[(move.location_id, move.variant_id)].pk]["on_hand"] += move.quantity
    actor = actor if getattr(actor, "pk", None) else None
    if not returning and connection.vendor == "postgresql":
        _insert_ledger(moves, source=source, actor_id=actor.pk if actor else None, now=now)
        bulk_increment(deltas)
        return []
    movements = []
    for move in moves:
        movements.append(
            StockMovement(
                location_id=move.location_id,
                variant_id=move.variant_id,
                kind=move.kind,
                quantity=move.quantity,
                channel_id=move.channel_id,
                source=source,
                reference=move.reference,
                reason=move.reason,
                idempotency_key=move.idempotency_key,
                actor=actor,
                occurred_at=move.occurred_at or now,
            )
        )
    created = StockMovement.objects.bulk_create(movements, batch_size=BATCH)
    bulk_increment(deltas)
    return created if returning else []


def _insert_ledger(moves: list[Move], *, source: str, actor_id, now) -> None:
    """PostgreSQL: the ledger lines of ``moves``, ``BATCH`` at a time, each one
    ``INSERT ... SELECT`` from a parameter array per column. ``recorded_at`` is the time of
    writing, as the model's ``auto_now_add`` sets it."""
    table = connection.ops.quote_name(StockMovement._meta.db_table)
    recorded_at = timezone.now()
    with connection.cursor() as cursor:
        for start in range(0, len(moves), BATCH):
            chunk = moves[start : start + BATCH]
            cursor.execute(
                f"INSERT INTO {table} (location_id, variant_id, kind, quantity, channel_id, "
                "source, reference, reason, idempotency_key, actor_id, occurred_at, recorded_at) "
                "SELECT m.location_id, m.variant_id, m.kind, m.quantity, m.channel_id, %s, "
                "m.reference, m.reason, m.idempotency_key, %s, m.occurred_at, %s "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::integer[], "
                "%s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[], %s::timestamptz[]) "
                "AS m(location_id, variant_id, kind, quantity, channel_id, reference, reason, "
                "idempotency_key, occurred_at)",
                [
                    source,
                    actor_id,
                    recorded_at,
                    [m.location_id for m in chunk],
                    [m.variant_id for m in chunk],
                    [m.kind for m in chunk],
                    [m.quantity for m in chunk],
                    [m.channel_id for m in chunk],
                    [m.reference for m in chunk],
                    [m.reason for m in chunk],
                    [m.idempotency_key for m in chunk],
                    [m.occurred_at or now for m in chunk],
                ],
            )


def after_commit(func, **kwargs) -> None:
    """Run ``func(**kwargs)`` once the transaction commits. Robust: a failure is logged and
    the scheduled sweep repairs what it missed, the committed change stands."""
    call = partial(func, **kwargs)
    call.__qualname__ = func.__qualname__  # Django's error log names the callback
    transaction.on_commit(call, robust=True)


INLINE_REFRESH_LIMIT = 200


def after_commit_refresh(variant_ids) -> None:
    """Refresh the channel availability of ``variant_ids`` once the transaction commits: in
    the same request for a few variants (integrators read their own writes), by a worker for
    more (a POS batch of thousands should not wait for it); the sweep catches anything lost."""
    from inventory.services.availability import availability_refresh

    ids = sorted(set(variant_ids))
    if not ids:
        return
    if len(ids) <= INLINE_REFRESH_LIMIT:
        after_commit(availability_refresh, variant_ids=ids)
    else:
        from inventory.tasks import refresh_availability

        after_commit(refresh_availability.delay, variant_ids=ids)


def positive_quantity(value, field_name="quantity") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except (TypeError, ValueError):
            raise ValidationFailed(
                f"{field_name} must be a whole number, not {value!r}.",
                extra={field_name: ["A whole number is required."]},
            ) from None
    if value <= 0:
        raise ValidationFailed(
            f"{field_name} must be at least 1.", extra={field_name: ["Must be at least 1."]}
        )
    if value > MAX_QUANTITY:
        raise ValidationFailed(
            f"{field_name} must be at most {MAX_QUANTITY:,}.",
            extra={field_name: [f"At most {MAX_QUANTITY:,}."]},
        )
    return value


def variants_by_sku(values, *, only=None, related=()) -> dict[str, Variant]:
    """The variants that ``values`` name (SKUs in any case, or variants), in one query, by
    normalised SKU. SKUs that name nothing are left out; look lines up with ``variant_of``.
    ``only``: the fields to load, when the caller reads no others (a batch of 10,000 lines);
    ``related``: relations to load in the same query (``select_related``)."""
    found, wanted = {}, set()
    for value in values:
        if isinstance(value, Variant):
            found[value.sku] = value
        elif sku := normalize_sku(str(value)):
            wanted.add(sku)
    wanted -= found.keys()
    if wanted:
        variants = Variant.objects.filter(sku__in=sorted(wanted))
        if related:
            variants = variants.select_related(*related)
        if only:
            variants = variants.only(*only)
        found.update((v.sku, v) for v in variants)
    return found


def variant_of(variants: dict[str, Variant], value) -> Variant:
    """The variant ``value`` names among ``variants`` (from ``variants_by_sku``)."""
    if isinstance(value, Variant):
        return value
    variant = variants.get(normalize_sku(str(value)))
    if variant is None:
        raise NotFound(f"No variant with SKU {value}.", extra={"sku": [f"Unknown SKU {value}."]})
    return variant


def resolve_location(value, field_name: str = "location") -> Location:
    """The location a request names by its code. An unknown code is invalid input (400),
    reported under ``field_name``."""
    if isinstance(value, Location):
        return value
    location = Location.objects.filter(code=str(value)).first()
    if location is None:
        raise ValidationFailed(
            f"No location with code {value}.",
            extra={field_name: [f"Unknown location {value}."]},
        )
    return location


def require_active_location(location: Location, field_name="location") -> None:
    if not location.is_active:
        raise ValidationFailed(
            f"Location {location.code} is inactive.",
            code="location_inactive",
            extra={field_name: [f"{location.code} is inactive."]},
        )
