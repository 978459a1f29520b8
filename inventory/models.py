"""Inventory: one stock pool across stores and warehouses.

Quantities change only through ``inventory.services``; the database refuses what the code forgot
(``reserved >= 0``, signs of ledger movements, one stock row per location and variant, one
movement per idempotency key and source).
"""

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce

from omni.models import Channel, code_validator

# The store pages live under /store/<location code>/ beside these pages of their own: a
# location with one of these codes would have pages nobody can reach.
RESERVED_LOCATION_CODES = frozenset(("sign-in", "sign-out", "switch"))


def validate_location_code(value: str) -> None:
    if value in RESERVED_LOCATION_CODES:
        raise ValidationError(
            f"“{value}” names a store page of its own; choose another code "
            f"(not {', '.join(sorted(RESERVED_LOCATION_CODES))})."
        )


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (e.g. Europe/Paris).")


class LocationKind(models.TextChoices):
    STORE = "store", "Store"
    WAREHOUSE = "warehouse", "Warehouse"


class LocationQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


class Location(models.Model):
    """A store or a warehouse that holds stock."""

    code = models.CharField(
        max_length=40, unique=True, validators=[code_validator, validate_location_code]
    )
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=LocationKind.choices)
    address_line1 = models.CharField("address", max_length=200, blank=True)
    address_line2 = models.CharField("address (line 2)", max_length=200, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2 code.")
    time_zone = models.CharField(
        max_length=64, default="UTC", validators=[validate_time_zone], help_text="e.g. Europe/Paris"
    )
    latitude = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(-90), MaxValueValidator(90)],
    )
    longitude = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(-180), MaxValueValidator(180)],
    )
    ships_online_orders = models.BooleanField(default=False)
    offers_pickup = models.BooleanField(default=False)
    safety_stock = models.PositiveIntegerField(
        default=0,
        help_text="Units of each item kept back from reservations and channels, unless the "
        "stock row sets its own.",
    )
    pickup_transfer_hours = models.PositiveIntegerField(
        default=48,
        help_text="Hours it takes to bring stock here from another location for a pickup "
        "order; the customer is told the order will be ready then.",
    )
    is_active = models.BooleanField(default=True)
    count_requested_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Set when a count has been requested."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = LocationQuerySet.as_manager()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in LocationKind]), name="location_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(latitude__isnull=True) | Q(latitude__gte=-90, latitude__lte=90),
                name="location_latitude_range",
            ),
            models.CheckConstraint(
                condition=Q(longitude__isnull=True) | Q(longitude__gte=-180, longitude__lte=180),
                name="location_longitude_range",
            ),
            models.CheckConstraint(
                condition=Q(latitude__isnull=True, longitude__isnull=True)
                | Q(latitude__isnull=False, longitude__isnull=False),
                name="location_coordinates_together",
                violation_error_message="Give both latitude and longitude, or neither.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def clean(self):
        if (self.latitude is None) != (self.longitude is None):
            raise ValidationError("Give both latitude and longitude, or neither.")


class StockLevel(models.Model):
    """What one location holds of one variant.

    ``on_hand`` is what the ledger says is there (it may go below zero when a store sells what
    the ledger did not know it had); ``reserved`` is held for orders and transfers. Available to
    sell here = on_hand - reserved - safety stock.
    """

    # No index of their own: the unique (location, variant) index and the (variant, location)
    # index start with them, and every index is written again when a row moves page.
    location = models.ForeignKey(
        Location, on_delete=models.PROTECT, related_name="stock_levels", db_index=False
    )
    variant = models.ForeignKey(
        "catalog.Variant", on_delete=models.PROTECT, related_name="stock_levels", db_index=False
    )
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    safety_stock = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the location's safety stock for this item."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["location", "variant"], name="stock_level_unique"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="stock_reserved_gte_0"),
        ]
        indexes = [models.Index(fields=["variant", "location"], name="stock_variant_idx")]

    def __str__(self) -> str:
        return f"{self.variant_id}@{self.location_id}"


class MovementKind(models.TextChoices):
    RECEIPT = "receipt", "Receipt"
    SALE = "sale", "Sale"
    RETURN = "return", "Return"
    TRANSFER_OUT = "transfer_out", "Transfer out"
    TRANSFER_IN = "transfer_in", "Transfer in"
    ADJUSTMENT = "adjustment", "Adjustment"
    COUNT_CORRECTION = "count_correction", "Count correction"


INBOUND_KINDS = (MovementKind.RECEIPT, MovementKind.RETURN, MovementKind.TRANSFER_IN)
OUTBOUND_KINDS = (MovementKind.SALE, MovementKind.TRANSFER_OUT)


class StockMovement(models.Model):
    """One line of the append-only stock ledger; ``on_hand`` is the sum of a pair's movements."""

    id = models.BigAutoField(primary_key=True)
    # No index of their own: movement_pair_idx and movement_location_idx start with the
    # location, movement_variant_idx with the variant (each index is written by every line).
    location = models.ForeignKey(
        Location, on_delete=models.PROTECT, related_name="movements", db_index=False
    )
    variant = models.ForeignKey(
        "catalog.Variant", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=20, choices=MovementKind.choices)
    quantity = models.IntegerField(help_text="Signed: positive in, negative out.")
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(
        max_length=100, help_text="Who reported it: an API client, a store, the admin, a task."
    )
    reference = models.CharField(max_length=120, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)
    # The stock row this line belongs to, joined on (location, variant): no column of its own.
    # Lets reconciliation sum a location's ledger per stock row in one grouped join.
    stock_row = models.ForeignObject(
        StockLevel,
        on_delete=models.DO_NOTHING,
        from_fields=["location", "variant"],
        to_fields=["location", "variant"],
        related_name="ledger",
        null=True,
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in MovementKind]), name="movement_kind_valid"
            ),
            models.CheckConstraint(condition=~Q(quantity=0), name="movement_quantity_nonzero"),
            models.CheckConstraint(
                condition=~Q(kind__in=[k.value for k in INBOUND_KINDS]) | Q(quantity__gt=0),
                name="movement_inbound_positive",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=[k.value for k in OUTBOUND_KINDS]) | Q(quantity__lt=0),
                name="movement_outbound_negative",
            ),
            models.UniqueConstraint(
                fields=["source", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="movement_idempotency_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["location", "variant", "occurred_at"], name="movement_pair_idx"),
            models.Index(fields=["variant", "-id"], name="movement_variant_idx"),
            models.Index(fields=["location", "-id"], name="movement_location_idx"),
            models.Index(fields=["kind", "occurred_at"], name="movement_kind_time_idx"),
            models.Index(fields=["reference"], name="movement_reference_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.quantity:+d}"


class MovementBatch(models.Model):
    """A batch of movements sent by an integrator (POS), recorded once per source and id."""

    source = models.CharField(max_length=100)
    batch_id = models.CharField(max_length=100)
    location = models.ForeignKey(
        Location, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the batch's movements.")
    movement_count = models.PositiveIntegerField(default=0)
    applied_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(
        default=0, help_text="Movements already recorded by an earlier batch."
    )
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "batch_id"], name="movement_batch_unique")
        ]
        verbose_name_plural = "movement batches"

    def __str__(self) -> str:
        return f"{self.source}:{self.batch_id}"


class ReservationKind(models.TextChoices):
    ORDER_LINE = "order_line", "Order line"
    CHECKOUT_HOLD = "checkout_hold", "Checkout hold"
    TRANSFER = "transfer", "Transfer"


class ReservationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CONSUMED = "consumed", "Consumed"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class Reservation(models.Model):
    """Stock held at a location for an order line, a checkout or a transfer."""

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="reservations")
    variant = models.ForeignKey("catalog.Variant", on_delete=models.PROTECT, related_name="+")
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=ReservationKind.choices)
    status = models.CharField(
        max_length=20, choices=ReservationStatus.choices, default=ReservationStatus.ACTIVE
    )
    quantity = models.PositiveIntegerField()
    reference = models.CharField(
        max_length=120, help_text="The order, checkout or transfer this stock is held for."
    )
    line_reference = models.CharField(max_length=120, blank=True)
    pinned = models.BooleanField(
        default=False, help_text="Held at this location on purpose (pickup here); never moved."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    needs_attention = models.BooleanField(default=False)
    attention_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    stock_row = models.ForeignObject(
        StockLevel,
        on_delete=models.DO_NOTHING,
        from_fields=["location", "variant"],
        to_fields=["location", "variant"],
        related_name="holds",
        null=True,
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="reservation_quantity_gt_0"),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in ReservationStatus]),
                name="reservation_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in ReservationKind]),
                name="reservation_kind_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["reference"], name="reservation_reference_idx"),
            models.Index(
                fields=["location", "variant"],
                condition=Q(status="active"),
                name="reservation_active_pair_idx",
            ),
            models.Index(
                fields=["expires_at"],
                condition=Q(status="active", expires_at__isnull=False),
                name="reservation_expiry_idx",
            ),
            models.Index(
                fields=["id"],
                condition=Q(status="active", needs_attention=True),
                name="reservation_attention_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ×{self.quantity}"


class AllocationStrategy(models.TextChoices):
    PRIORITY = "priority", "Location priority"
    NEAREST = "nearest", "Nearest location"
    MOST_STOCK = "most_stock", "Most stock"


class ChannelStockPolicy(models.Model):
    """How much of the pool a sales channel may promise, and where its orders are served from."""

    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, related_name="stock_policy")
    buffer = models.PositiveIntegerField(
        default=0, help_text="Units held back from the channel's total, per item."
    )
    exposed_percent = models.PositiveSmallIntegerField(
        default=100,
        validators=[MaxValueValidator(100)],
        help_text="Share of the sellable stock shown to the channel (rounded down).",
    )
    cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="Never promise more than this per item."
    )
    low_stock_threshold = models.PositiveIntegerField(
        default=0, help_text="At or below this (and above zero) an item counts as low stock."
    )
    allocation_strategy = models.CharField(
        max_length=20, choices=AllocationStrategy.choices, default=AllocationStrategy.PRIORITY
    )
    checkout_hold_minutes = models.PositiveIntegerField(
        default=30, help_text="How long a checkout hold keeps stock before it expires."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "channel stock policy"
        verbose_name_plural = "channel stock policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(exposed_percent__lte=100), name="stock_policy_percent_lte_100"
            ),
            models.CheckConstraint(
                condition=Q(allocation_strategy__in=[s.value for s in AllocationStrategy]),
                name="stock_policy_strategy_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Stock policy of {self.channel_id}"


class ChannelStockRule(models.Model):
    """A location that feeds a sales channel, in a priority, with a buffer held back there."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="stock_rules")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="channel_rules")
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Lower serves first with the location-priority strategy."
    )
    buffer = models.PositiveIntegerField(
        default=0, help_text="Units per item at this location never promised to the channel."
    )

    class Meta:
        ordering = ["channel", "priority", "location"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "location"], name="stock_rule_unique")
        ]

    def __str__(self) -> str:
        return f"{self.location} feeds {self.channel}"


class ChannelAvailability(models.Model):
    """The quantity a sales channel may promise of a variant, precomputed from stock and rules."""

    variant = models.ForeignKey(
        "catalog.Variant", on_delete=models.CASCADE, related_name="availability"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField(default=0)
    is_low_stock = models.BooleanField(default=False)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "channel availability"
        constraints = [
            models.UniqueConstraint(fields=["variant", "channel"], name="availability_unique")
        ]

    def __str__(self) -> str:
        return f"{self.variant_id} on {self.channel_id}: {self.quantity}"


class CountStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    SUBMITTED = "submitted", "Submitted (waiting for reconciliation)"
    RECONCILED = "reconciled", "Reconciled"
    CANCELLED = "cancelled", "Cancelled"


class CountKind(models.TextChoices):
    PHYSICAL = "physical", "Physical count"
    POS_SNAPSHOT = "pos_snapshot", "POS snapshot"


class StockCount(models.Model):
    """A count of (part of) a location at a moment; reconciliation compares it with the ledger."""

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="counts")
    kind = models.CharField(max_length=20, choices=CountKind.choices, default=CountKind.PHYSICAL)
    status = models.CharField(max_length=20, choices=CountStatus.choices)
    reason = models.CharField(max_length=200, blank=True)
    reference = models.CharField(max_length=120, blank=True)
    source = models.CharField(max_length=100, blank=True)
    counted_at = models.DateTimeField(null=True, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    run = models.ForeignKey(
        "ReconciliationRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="counts"
    )
    # Written with the lines, once (lines are not added to a submitted count): the lists and
    # the reconciliation's plan read it instead of counting millions of lines.
    # (a database default too, for code of the release before, still running during a deploy)
    line_count = models.PositiveIntegerField("lines", default=0, db_default=0, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in CountStatus]), name="count_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["requested", "cancelled"]) | Q(counted_at__isnull=False),
                name="count_counted_at_when_submitted",
            ),
            models.UniqueConstraint(
                fields=["location"],
                condition=Q(status="requested"),
                name="count_one_open_request_per_location",
            ),
        ]
        indexes = [
            models.Index(
                fields=["submitted_at"], condition=Q(status="submitted"), name="count_pending_idx"
            )
        ]

    def __str__(self) -> str:
        return f"Count #{self.pk} at {self.location_id}"


class StockCountLine(models.Model):
    """A line of a count. Reconciliation writes ``expected_quantity`` into every line of a
    count once; on PostgreSQL the table is stored half full (fillfactor 50, migration 0005) so
    that write stays on the line's page and touches no index (a HOT update), and lines are
    found by count through the unique (count, variant) index."""

    count = models.ForeignKey(
        StockCount, on_delete=models.CASCADE, related_name="lines", db_index=False
    )
    variant = models.ForeignKey("catalog.Variant", on_delete=models.PROTECT, related_name="+")
    counted_quantity = models.PositiveIntegerField()
    expected_quantity = models.IntegerField(
        null=True, blank=True, help_text="What the ledger said at the count time (reconciliation)."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["count", "variant"], name="count_line_unique")
        ]

    def __str__(self) -> str:
        return f"{self.variant_id}: {self.counted_quantity}"


class CountTolerance(models.Model):
    """Count differences small enough to apply without review.

    A difference is within tolerance when its size is at most ``max_units``, or at most
    ``max_percent`` of the expected quantity. A rule for a location wins over the general rule
    (no location); without any rule every difference waits for review.
    """

    location = models.OneToOneField(
        Location, null=True, blank=True, on_delete=models.CASCADE, related_name="count_tolerance"
    )
    max_units = models.PositiveIntegerField(default=0)
    max_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Coalesce("location", Value(0)),
                name="count_tolerance_one_per_location",
                # Locations are unique already (one-to-one): this catches a second general rule.
                violation_error_message="There is already a general tolerance (no location).",
            ),
            models.CheckConstraint(
                condition=Q(max_percent__gte=0, max_percent__lte=100),
                name="count_tolerance_percent_range",
            ),
        ]

    def __str__(self) -> str:
        where = self.location_id and f"location {self.location_id}" or "all locations"
        return f"Tolerance for {where}: {self.max_units} units or {self.max_percent}%"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ReconciliationRun(models.Model):
    """One reconciliation with what it found and did."""

    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.RUNNING)
    trigger = models.CharField(max_length=40, default="schedule")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    counts_processed = models.PositiveIntegerField(default=0)
    lines_compared = models.PositiveIntegerField(default=0)
    discrepancies_found = models.PositiveIntegerField(default=0)
    auto_applied = models.PositiveIntegerField(default=0)
    pending_review = models.PositiveIntegerField(default=0)
    reservations_expired = models.PositiveIntegerField(default=0)
    reservations_resourced = models.PositiveIntegerField(default=0)
    reservations_flagged = models.PositiveIntegerField(default=0)
    on_hand_drift_repaired = models.PositiveIntegerField(default=0)
    reserved_drift_repaired = models.PositiveIntegerField(default=0)
    availability_updated = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Reconciliation #{self.pk} ({self.status})"


class DiscrepancyKind(models.TextChoices):
    COUNT = "count", "Count differs from ledger"
    ON_HAND_DRIFT = "on_hand_drift", "On hand differed from the ledger (repaired)"
    RESERVED_DRIFT = "reserved_drift", "Reserved differed from reservations (repaired)"


class DiscrepancyStatus(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    AUTO_APPLIED = "auto_applied", "Applied (within tolerance)"
    APPROVED = "approved", "Approved and applied"
    REJECTED = "rejected", "Rejected"
    REPAIRED = "repaired", "Repaired"


class Discrepancy(models.Model):
    run = models.ForeignKey(
        ReconciliationRun, on_delete=models.PROTECT, related_name="discrepancies"
    )
    kind = models.CharField(max_length=20, choices=DiscrepancyKind.choices)
    status = models.CharField(max_length=20, choices=DiscrepancyStatus.choices)
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    variant = models.ForeignKey("catalog.Variant", on_delete=models.PROTECT, related_name="+")
    count_line = models.OneToOneField(
        StockCountLine, null=True, blank=True, on_delete=models.PROTECT, related_name="discrepancy"
    )
    expected = models.IntegerField()
    actual = models.IntegerField(help_text="Counted, or the sum of the ledger / reservations.")
    difference = models.IntegerField()
    movement = models.OneToOneField(
        StockMovement, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "discrepancies"
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="count") | Q(count_line__isnull=False),
                name="discrepancy_count_has_line",
            ),
            models.CheckConstraint(
                condition=Q(difference=F("actual") - F("expected")),
                name="discrepancy_difference_consistent",
            ),
        ]
        indexes = [
            models.Index(
                fields=["id"], condition=Q(status="pending"), name="discrepancy_pending_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.difference:+d}"


class TransferStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    SHIPPED = "shipped", "Shipped (in transit)"
    RECEIVED = "received", "Received"
    CANCELLED = "cancelled", "Cancelled"


class Transfer(models.Model):
    """Stock moved from one location to another; reserved at the source until shipped."""

    number = models.CharField(max_length=30, unique=True)
    from_location = models.ForeignKey(
        Location, on_delete=models.PROTECT, related_name="outgoing_transfers"
    )
    to_location = models.ForeignKey(
        Location, on_delete=models.PROTECT, related_name="incoming_transfers"
    )
    status = models.CharField(
        max_length=20, choices=TransferStatus.choices, default=TransferStatus.REQUESTED
    )
    reference = models.CharField(max_length=120, blank=True, help_text="e.g. the order it serves")
    note = models.CharField(max_length=200, blank=True)
    expected_at = models.DateTimeField(null=True, blank=True)
    requested_at = models.DateTimeField()
    shipped_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(from_location=F("to_location")), name="transfer_distinct_locations"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in TransferStatus]),
                name="transfer_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["to_location", "status"], name="transfer_incoming_idx"),
            models.Index(fields=["from_location", "status"], name="transfer_outgoing_idx"),
        ]

    def __str__(self) -> str:
        return self.number


class TransferLine(models.Model):
    transfer = models.ForeignKey(Transfer, on_delete=models.CASCADE, related_name="lines")
    variant = models.ForeignKey("catalog.Variant", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    shipped_quantity = models.PositiveIntegerField(default=0)
    received_quantity = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["transfer", "variant"], name="transfer_line_unique"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="transfer_line_quantity_gt_0"),
            models.CheckConstraint(
                condition=Q(shipped_quantity__lte=F("quantity")),
                name="transfer_line_shipped_lte_quantity",
            ),
            models.CheckConstraint(
                condition=Q(received_quantity__lte=F("shipped_quantity")),
                name="transfer_line_received_lte_shipped",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.variant_id} ×{self.quantity}"

    @property
    def in_transit(self) -> int:
        if self.transfer.status != TransferStatus.SHIPPED:
            return 0
        return self.shipped_quantity - self.received_quantity


class ReorderRule(models.Model):
    """When and how much of an item to reorder for a location."""

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="reorder_rules")
    variant = models.ForeignKey("catalog.Variant", on_delete=models.CASCADE, related_name="+")
    min_quantity = models.PositiveIntegerField(help_text="Reorder at or below this position.")
    max_quantity = models.PositiveIntegerField(help_text="Order up to this position.")
    lead_time_days = models.PositiveSmallIntegerField(default=7)
    pack_size = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["location", "variant"], name="reorder_rule_unique"),
            models.CheckConstraint(
                condition=Q(max_quantity__gte=F("min_quantity")), name="reorder_max_gte_min"
            ),
            models.CheckConstraint(condition=Q(pack_size__gte=1), name="reorder_pack_size_gte_1"),
        ]

    def __str__(self) -> str:
        return f"Reorder {self.variant_id} at {self.location_id}"

    def clean(self):
        if (
            self.min_quantity is not None
            and self.max_quantity is not None
            and self.max_quantity < self.min_quantity
        ):
            raise ValidationError({"max_quantity": "Must be at least the minimum."})


class SuggestionKind(models.TextChoices):
    PURCHASE = "purchase", "Purchase"
    TRANSFER = "transfer", "Transfer from another location"


class SuggestionStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ORDERED = "ordered", "Purchase ordered"
    TRANSFER_CREATED = "transfer_created", "Transfer created"
    DISMISSED = "dismissed", "Dismissed"


class ReplenishmentSuggestion(models.Model):
    rule = models.ForeignKey(ReorderRule, on_delete=models.CASCADE, related_name="suggestions")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey("catalog.Variant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=SuggestionKind.choices)
    status = models.CharField(
        max_length=20, choices=SuggestionStatus.choices, default=SuggestionStatus.PROPOSED
    )
    quantity = models.PositiveIntegerField()
    from_location = models.ForeignKey(
        Location, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    daily_velocity = models.DecimalField(max_digits=10, decimal_places=3)
    reorder_point = models.PositiveIntegerField()
    position = models.IntegerField(help_text="On hand - reserved + in transit, when proposed.")
    transfer = models.ForeignKey(
        Transfer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule"], condition=Q(status="proposed"), name="suggestion_one_open_per_rule"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="suggestion_quantity_gt_0"),
            models.CheckConstraint(
                condition=~Q(kind="transfer") | Q(from_location__isnull=False),
                name="suggestion_transfer_has_source",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.quantity} of {self.variant_id}"
