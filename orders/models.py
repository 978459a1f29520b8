"""Carts, orders from every sales channel, their fulfilment and returns, and which stores each
member of the store staff works in.

Carts and orders point at ``customers.Customer`` with ordinary foreign keys, so a merge moves
them to the survivor with everything else (``customers.services.merge``). Orders are business
records: erasing a customer keeps them and blanks only the personal fields
(``Order.erase_customer_rows``).
"""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q


class CartStatus(models.TextChoices):
    OPEN = "open", "Open"
    CONVERTED = "converted", "Converted to an order"
    ABANDONED = "abandoned", "Abandoned"


class Cart(models.Model):
    """A basket on a sales channel: anonymous (known by its token) until identity resolution
    ties it to a customer."""

    token = models.CharField(
        max_length=32, unique=True, editable=False, help_text="The cart's public id."
    )
    channel = models.ForeignKey("omni.Channel", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(
        "customers.Customer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="carts",
    )
    status = models.CharField(max_length=20, choices=CartStatus.choices, default=CartStatus.OPEN)
    currency = models.CharField(max_length=3)
    external_reference = models.CharField(
        max_length=120, blank=True, help_text="The web shop's or app's own id for this cart."
    )
    created_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["-last_activity_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in CartStatus]), name="cart_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status=CartStatus.OPEN) | Q(closed_at__isnull=False),
                name="cart_closed_has_time",
            ),
        ]
        indexes = [
            # Open carts of a customer (store lookup, segments); also serves the customer FK.
            models.Index(fields=["customer", "status"], name="cart_customer_status_idx"),
            # Idle open carts (abandonment sweeps, campaign triggers).
            models.Index(
                fields=["last_activity_at"],
                name="cart_open_idle_idx",
                condition=Q(status="open"),
            ),
        ]

    def __str__(self) -> str:
        return f"Cart {self.token[:8]}"

    @property
    def is_open(self) -> bool:
        return self.status == CartStatus.OPEN


class CartLine(models.Model):
    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="lines")
    variant = models.ForeignKey("catalog.Variant", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(
        max_digits=12, decimal_places=2, help_text="The channel's price when last changed."
    )
    added_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["added_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["cart", "variant"], name="cart_line_unique_variant"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="cart_line_quantity_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.variant_id}"


class FulfilmentMethod(models.TextChoices):
    SHIP = "ship", "Ship to the customer"
    PICKUP = "pickup", "Pickup at a store"
    IN_STORE = "in_store", "In store"


class OrderStatus(models.TextChoices):
    PLACED = "placed", "Placed"
    AWAITING_TRANSFER = "awaiting_transfer", "Awaiting transfer"
    READY = "ready", "Ready for pickup"
    COLLECTED = "collected", "Collected"
    SHIPPED = "shipped", "Shipped"
    COMPLETED = "completed", "Completed in store"
    RETURNED = "returned", "Returned"
    CANCELLED = "cancelled", "Cancelled"


OPEN_STATUSES = (OrderStatus.PLACED, OrderStatus.AWAITING_TRANSFER, OrderStatus.READY)
DONE_STATUSES = (OrderStatus.COLLECTED, OrderStatus.SHIPPED, OrderStatus.COMPLETED)


class Order(models.Model):
    """An order from any sales channel, at that channel's prices, fulfilled from the one stock
    pool. Its status changes only through ``orders.services`` (the state machine)."""

    number = models.CharField(max_length=20, unique=True, editable=False)
    channel = models.ForeignKey("omni.Channel", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(
        "customers.Customer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="orders",
    )
    cart = models.OneToOneField(
        Cart, null=True, blank=True, on_delete=models.SET_NULL, related_name="order"
    )
    external_reference = models.CharField(
        max_length=120,
        null=True,
        blank=True,
        help_text="The channel's own id for this order (marketplace order, POS receipt).",
    )
    status = models.CharField(max_length=20, choices=OrderStatus.choices)
    fulfilment_method = models.CharField(max_length=20, choices=FulfilmentMethod.choices)
    store = models.ForeignKey(
        "inventory.Location",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="store_orders",
        help_text="Where the customer collects (pickup) or bought (in store).",
    )
    pickup_code = models.CharField(max_length=6, blank=True, editable=False)
    public_token = models.CharField(
        max_length=32, unique=True, editable=False, help_text="Opens the customer's confirmation."
    )
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(max_digits=14, decimal_places=2)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    refunded_total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    contact_name = models.CharField(max_length=200, blank=True)
    contact_email = models.CharField(max_length=254, blank=True)
    contact_phone = models.CharField(max_length=32, blank=True)
    shipping_address = models.TextField(blank=True)
    note = models.CharField(max_length=500, blank=True)
    placed_at = models.DateTimeField()
    expected_ready_at = models.DateTimeField(
        null=True, blank=True, help_text="When a pickup waiting for a transfer should be ready."
    )
    ready_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="Collected, shipped, completed or cancelled."
    )
    needs_attention = models.BooleanField(default=False)
    attention_reason = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=80, help_text="client:<id> or user:<id>.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-placed_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in OrderStatus]), name="order_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(fulfilment_method__in=[m.value for m in FulfilmentMethod]),
                name="order_fulfilment_method_valid",
            ),
            models.CheckConstraint(
                condition=Q(fulfilment_method="ship") | Q(store__isnull=False),
                name="order_store_for_pickup_and_in_store",
                violation_error_message="A pickup or in-store order needs its store.",
            ),
            models.CheckConstraint(
                condition=~Q(fulfilment_method="pickup") | ~Q(pickup_code=""),
                name="order_pickup_has_code",
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="order_total_gte_0"),
            models.CheckConstraint(
                condition=Q(refunded_total__gte=0, refunded_total__lte=F("total")),
                name="order_refund_within_total",
            ),
            models.UniqueConstraint(
                fields=["channel", "external_reference"],
                name="order_unique_external_reference",
                condition=Q(external_reference__isnull=False),
            ),
        ]
        indexes = [
            # The pickup queue: a store's open pickups, oldest first.
            models.Index(
                fields=["store", "status", "placed_at"],
                name="order_store_queue_idx",
                condition=Q(fulfilment_method="pickup"),
            ),
            models.Index(fields=["customer", "-placed_at"], name="order_customer_idx"),
            models.Index(fields=["channel", "-placed_at"], name="order_channel_idx"),
            models.Index(fields=["status", "-placed_at"], name="order_status_idx"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def qr_payload(self) -> str:
        """What the customer's QR code says: the order number and its pickup code, so one scan
        at the counter finds the order and proves the code."""
        return f"OMNI:{self.number}:{self.pickup_code}"

    @classmethod
    def erase_customer_rows(cls, customer) -> int:
        """Orders stay (they are the business's records); their personal fields go."""
        return cls._base_manager.filter(customer=customer).update(
            contact_name="", contact_email="", contact_phone="", shipping_address="", note=""
        )

    @classmethod
    def export_customer_rows(cls, customer) -> list:
        rows = []
        orders = (
            cls._base_manager.filter(customer=customer)
            .select_related("channel", "store")
            .prefetch_related("lines")
            .order_by("placed_at", "pk")
        )
        for order in orders:
            rows.append(
                {
                    "number": order.number,
                    "channel": order.channel.code,
                    "status": order.status,
                    "fulfilment_method": order.fulfilment_method,
                    "store": order.store.code if order.store else None,
                    "placed_at": order.placed_at,
                    "currency": order.currency,
                    "total": order.total,
                    "refunded_total": order.refunded_total,
                    "contact_name": order.contact_name,
                    "contact_email": order.contact_email,
                    "contact_phone": order.contact_phone,
                    "shipping_address": order.shipping_address,
                    "lines": [
                        {
                            "sku": line.sku,
                            "title": line.title,
                            "quantity": line.quantity,
                            "unit_price": line.unit_price,
                            "returned_quantity": line.returned_quantity,
                        }
                        for line in order.lines.all()
                    ],
                }
            )
        return rows


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_number = models.PositiveSmallIntegerField()
    variant = models.ForeignKey("catalog.Variant", on_delete=models.PROTECT, related_name="+")
    sku = models.CharField(max_length=64)
    title = models.CharField(max_length=300)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    line_total = models.DecimalField(max_digits=14, decimal_places=2)
    returned_quantity = models.PositiveIntegerField(default=0)
    transfer = models.ForeignKey(
        "inventory.Transfer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The transfer bringing this line's stock to the pickup store.",
    )
    transfer_quantity = models.PositiveIntegerField(
        default=0, help_text="Units of this line that come by the transfer."
    )

    class Meta:
        ordering = ["order", "line_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "line_number"], name="order_line_unique_number"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_line_quantity_gt_0"),
            models.CheckConstraint(
                condition=Q(returned_quantity__lte=F("quantity")),
                name="order_line_returned_within_quantity",
            ),
            models.CheckConstraint(
                condition=Q(transfer_quantity__lte=F("quantity")),
                name="order_line_transfer_within_quantity",
            ),
            models.CheckConstraint(
                condition=Q(unit_price__gte=0), name="order_line_unit_price_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}#{self.line_number} {self.quantity} x {self.sku}"

    @property
    def reference(self) -> str:
        """The reservation line reference for this line."""
        return str(self.line_number)


class OrderStatusChange(models.Model):
    """The order's status history: who changed what, and when."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="history")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    at = models.DateTimeField()
    source = models.CharField(max_length=80)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["order", "at", "pk"]
        indexes = [models.Index(fields=["order", "at"], name="order_history_idx")]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status or '-'} -> {self.to_status}"


class Fulfilment(models.Model):
    """Goods leaving for the customer: a shipment from a location, a hand-over at the pickup
    counter, or an in-store sale."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fulfilments")
    method = models.CharField(max_length=20, choices=FulfilmentMethod.choices)
    location = models.ForeignKey("inventory.Location", on_delete=models.PROTECT, related_name="+")
    units = models.PositiveIntegerField()
    carrier = models.CharField(max_length=60, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["order", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.order_id} {self.method} from {self.location_id}"


class ReturnDisposition(models.TextChoices):
    RESTOCK = "restock", "Back on the shelf"
    WRITE_OFF = "write_off", "Written off"


class Return(models.Model):
    """Goods brought back, to any store, with the refund given."""

    number = models.CharField(max_length=20, unique=True, editable=False)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="returns")
    location = models.ForeignKey("inventory.Location", on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=200, blank=True)
    refund_amount = models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(0)]
    )
    created_at = models.DateTimeField()
    source = models.CharField(max_length=80)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(refund_amount__gte=0), name="return_refund_gte_0")
        ]
        indexes = [models.Index(fields=["location", "-created_at"], name="return_location_idx")]

    def __str__(self) -> str:
        return self.number


class ReturnLine(models.Model):
    return_record = models.ForeignKey(Return, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey(OrderLine, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    disposition = models.CharField(max_length=20, choices=ReturnDisposition.choices)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="return_line_quantity_gt_0"),
            models.CheckConstraint(
                condition=Q(disposition__in=[d.value for d in ReturnDisposition]),
                name="return_line_disposition_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x line {self.order_line_id} ({self.disposition})"


class StaffAssignment(models.Model):
    """A member of the store staff works in this store: she sees and changes its pickups,
    stock, transfers, counts and returns on the store pages, and nothing of other stores."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="store_assignments"
    )
    location = models.ForeignKey(
        "inventory.Location", on_delete=models.CASCADE, related_name="staff_assignments"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "location__code"]
        constraints = [
            models.UniqueConstraint(fields=["user", "location"], name="staff_assignment_unique")
        ]
        indexes = [models.Index(fields=["location"], name="staff_assignment_location_idx")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.location_id}"
