"""Campaigns and follow-ups: the rules of each messaging channel, campaigns with their steps,
templates with a rendition per channel, enrolments (one customer in one campaign for one
subject: a cart, an order, a subscription, ...), the message outbox, back-in-stock
subscriptions, attribution of orders to messages, and the rollups behind the dashboards.

Exactly once: an enrolment is unique per (campaign, customer, subject key) and a message per
(enrolment, step), so detection and sending may run twice, concurrently or after a crash and
add nothing twice. Enrolments, messages and subscriptions point at ``customers.Customer`` and
follow a merge like every other row (``Enrolment.merge_customer_rows`` folds duplicates).
"""

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat, Left

from omni.models import SALES_KINDS, Channel

# Messaging kinds a campaign can send on (ads audiences are exported, not sent to).
SENDABLE_KINDS = ("email", "sms", "push", "social_dm")


class OverCap(models.TextChoices):
    SKIP = "skip", "Skip the message"
    DEFER = "defer", "Send it when the cap allows"


class AttributeOn(models.TextChoices):
    CLICK = "click", "A click on a tracked link"
    DELIVERY = "delivery", "The delivery of the message"


class MessagingRule(models.Model):
    """The rules of one messaging channel, across every campaign."""

    channel = models.OneToOneField(
        Channel,
        on_delete=models.CASCADE,
        related_name="messaging_rule",
        limit_choices_to={"kind__in": SENDABLE_KINDS},
    )
    is_enabled = models.BooleanField(
        default=True, help_text="When off, no campaign sends on this channel (fallback applies)."
    )
    consent_required = models.BooleanField(
        default=True,
        help_text="Marketing needs the customer's opt-in. Transactional messages are sent "
        "without one, but never after an opt-out.",
    )
    frequency_cap = models.PositiveSmallIntegerField(
        default=3,
        help_text="At most this many marketing messages per customer per period, across "
        "campaigns (0: no cap).",
    )
    cap_period_hours = models.PositiveIntegerField(
        default=168, validators=[MinValueValidator(1)], help_text="The period of the cap."
    )
    over_cap = models.CharField(max_length=10, choices=OverCap.choices, default=OverCap.DEFER)
    quiet_hours_start = models.TimeField(
        null=True,
        blank=True,
        help_text="In the customer's time zone; a message due inside waits for the end.",
    )
    quiet_hours_end = models.TimeField(null=True, blank=True)
    fallback_channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        limit_choices_to={"kind__in": SENDABLE_KINDS},
        help_text="Where to send instead when this channel is not allowed or the customer "
        "has no address on it (followed in a chain).",
    )
    attribute_on = models.CharField(
        max_length=10,
        choices=AttributeOn.choices,
        default=AttributeOn.CLICK,
        help_text="What an order must follow to be credited to a message on this channel.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["channel__code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                | Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False),
                name="messaging_rule_quiet_hours_both",
                violation_error_message="Give both ends of the quiet hours, or neither.",
            ),
            models.CheckConstraint(
                condition=Q(over_cap__in=[c.value for c in OverCap]),
                name="messaging_rule_over_cap_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Rules for {self.channel}"

    def clean(self):
        # Both ends or neither: the check constraint says so, with its message, in forms too.
        if self.quiet_hours_start is not None and self.quiet_hours_start == self.quiet_hours_end:
            raise ValidationError("Quiet hours must start and end at different times.")
        if self.fallback_channel_id and self.fallback_channel_id == self.channel_id:
            raise ValidationError({"fallback_channel": "A channel cannot fall back to itself."})


class Template(models.Model):
    """One message with a rendition per messaging channel, in the Django template language
    (the context is documented in docs/campaigns.md)."""

    name = models.CharField(max_length=120, unique=True)
    description = models.CharField(max_length=300, blank=True)
    email_subject = models.CharField(max_length=200, blank=True)
    email_html = models.TextField(blank=True, verbose_name="email HTML")
    email_text = models.TextField(blank=True, verbose_name="email plain text")
    sms_text = models.TextField(blank=True, verbose_name="SMS text")
    push_title = models.CharField(max_length=120, blank=True)
    push_body = models.CharField(max_length=500, blank=True)
    social_text = models.TextField(blank=True, verbose_name="social message")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def has_rendition(self, kind: str) -> bool:
        if kind == "email":
            return bool(self.email_subject and (self.email_html or self.email_text))
        if kind == "sms":
            return bool(self.sms_text)
        if kind == "push":
            return bool(self.push_body)
        if kind == "social_dm":
            return bool(self.social_text)
        return False


class Trigger(models.TextChoices):
    CART_ABANDONED = "cart_abandoned", "Cart abandoned"
    BROWSE_ABANDONED = "browse_abandoned", "Browse abandoned"
    STORE_PURCHASE = "store_purchase", "Store purchase"
    BACK_IN_STOCK = "back_in_stock", "Back in stock"
    PICKUP_READY = "pickup_ready", "Pickup ready"
    WIN_BACK = "win_back", "Win-back after inactivity"
    BROADCAST = "broadcast", "Scheduled broadcast to a segment"


class Purpose(models.TextChoices):
    MARKETING = "marketing", "Marketing (consent, caps)"
    TRANSACTIONAL = "transactional", "Transactional (no cap; never after an opt-out)"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"


class Campaign(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    purpose = models.CharField(max_length=15, choices=Purpose.choices, default=Purpose.MARKETING)
    status = models.CharField(
        max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    segment = models.ForeignKey(
        "customers.Segment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
        help_text="Audience: only its members are enrolled (all customers when empty; "
        "required for a broadcast).",
    )
    sales_channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        limit_choices_to={"kind__in": SALES_KINDS},
        help_text="Carts, views, purchases or subscriptions of this sales channel only "
        "(any when empty).",
    )
    idle_minutes = models.PositiveIntegerField(
        default=60,
        help_text="Cart or browse abandoned: idle this long before the customer is enrolled.",
    )
    lookback_hours = models.PositiveIntegerField(
        default=72,
        validators=[MinValueValidator(1)],
        help_text="Only events this recent are picked up (a new campaign does not reach back "
        "for years).",
    )
    winback_days = models.PositiveIntegerField(
        default=90, help_text="Win-back: days since the customer's last purchase."
    )
    min_quantity = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Back in stock: the channel must promise at least this many.",
    )
    broadcast_at = models.DateTimeField(
        null=True, blank=True, help_text="Broadcast: when the segment is enrolled."
    )
    exit_on_purchase = models.BooleanField(
        default=True, help_text="Stop when the customer bought after enrolment."
    )
    exit_on_cart_closed = models.BooleanField(
        default=True, help_text="Stop when the cart was converted or closed."
    )
    exit_on_sold_out = models.BooleanField(
        default=True, help_text="Back in stock: stop when the item sold out again."
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(90)],
        help_text="Share of customers kept out (always the same customers) to measure lift.",
    )
    attribution_window_hours = models.PositiveIntegerField(
        default=72,
        validators=[MinValueValidator(1)],
        help_text="An order this soon after a message counts for the campaign (per channel "
        "overrides below).",
    )
    reentry_cooldown_days = models.PositiveIntegerField(
        default=7, help_text="Days before the same customer may enter this campaign again."
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(trigger__in=[t.value for t in Trigger]), name="campaign_trigger_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in CampaignStatus]),
                name="campaign_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(holdout_percent__lte=90), name="campaign_holdout_at_most_90"
            ),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True)
                | Q(ends_at__isnull=True)
                | Q(ends_at__gt=models.F("starts_at")),
                name="campaign_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def lookback_start(self, now):
        """The oldest event time detection picks up at ``now``."""
        return now - timedelta(hours=self.lookback_hours)

    @property
    def is_marketing(self) -> bool:
        return self.purpose == Purpose.MARKETING


class AttributionWindow(models.Model):
    """A campaign's attribution window on one messaging channel."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="attribution_windows"
    )
    channel = models.ForeignKey(
        Channel,
        on_delete=models.CASCADE,
        related_name="+",
        limit_choices_to={"kind__in": SENDABLE_KINDS},
    )
    hours = models.PositiveIntegerField(validators=[MinValueValidator(1)])

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "channel"], name="attribution_window_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hours} h on {self.channel_id}"


class CampaignStep(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    delay_minutes = models.PositiveIntegerField(
        default=0, help_text="After enrolment (first step) or after the previous step."
    )
    channels = models.CharField(
        max_length=200,
        help_text="Messaging channel codes in order of preference, e.g. 'email, sms'. The "
        "customer's preferred channel goes first when it is one of them.",
    )
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="steps")

    class Meta:
        ordering = ["campaign", "position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "position"], name="campaign_step_unique"),
            models.CheckConstraint(condition=Q(position__gte=1), name="campaign_step_from_1"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} step {self.position}"

    @property
    def channel_codes(self) -> list[str]:
        return [c.strip() for c in self.channels.split(",") if c.strip()]


class BackInStockSubscription(models.Model):
    """A customer waiting for a variant on a sales channel; used once, when it is back."""

    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="stock_subscriptions",
        db_index=False,
    )
    variant = models.ForeignKey("catalog.Variant", on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(
        Channel,
        on_delete=models.PROTECT,
        related_name="+",
        limit_choices_to={"kind__in": SALES_KINDS},
    )
    source = models.CharField(max_length=80)
    created_at = models.DateTimeField()
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was used by a back-in-stock campaign."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "variant", "channel"],
                condition=Q(notified_at__isnull=True),
                name="stock_subscription_open_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["variant", "channel"],
                condition=Q(notified_at__isnull=True),
                name="stock_subscription_waiting_idx",
            ),
            models.Index(fields=["customer", "created_at"], name="stock_subscription_cust_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} waits for {self.variant_id} on {self.channel_id}"

    @classmethod
    def merge_customer_rows(cls, survivor, merged) -> int:
        """Move the merged customer's subscriptions; a variant both wait for keeps one.
        Set-based: two statements whatever her history."""
        both_wait = cls.objects.filter(
            customer=survivor,
            notified_at__isnull=True,
            variant_id=OuterRef("variant_id"),
            channel_id=OuterRef("channel_id"),
        )
        cls.objects.filter(customer=merged, notified_at__isnull=True).filter(
            Exists(both_wait)
        ).delete()
        return cls.objects.filter(customer=merged).update(customer=survivor)


class EnrolmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    EXITED = "exited", "Exited"


class Enrolment(models.Model):
    """One customer in one campaign for one subject (a cart, an order, a subscription, a
    lapse, a broadcast); walks through the campaign's steps."""

    # Foreign keys without an index of their own: the unique constraint and the index below
    # lead with the customer and the campaign, and the subject columns are only read forward
    # (from the enrolment to its cart or order); each index would cost every detection insert.
    # The subject columns (cart, order, variant, sales channel, store, converted order) are
    # references without a database constraint: Django sets them to NULL when the row goes
    # (its deletion collector, not the database, applies SET_NULL), and each constraint is a
    # trigger PostgreSQL runs for every inserted row at commit (measured: half of detection's
    # time for 50,000 new enrolments). So is the campaign (the same for every row a detection
    # inserts; campaigns are deleted through Django, which deletes their enrolments first).
    # The customer keeps its constraint.
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        related_name="enrolments",
        db_index=False,
        db_constraint=False,
    )
    # Indexed by the unique constraint below, which starts with the customer.
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="enrolments", db_index=False
    )
    subject_key = models.CharField(
        max_length=100, help_text="What the customer was enrolled for, e.g. cart:812."
    )
    cart = models.ForeignKey(
        "orders.Cart",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    order = models.ForeignKey(
        "orders.Order",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    variant = models.ForeignKey(
        "catalog.Variant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    sales_channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    store = models.ForeignKey(
        "inventory.Location",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    holdout = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=EnrolmentStatus.choices, default=EnrolmentStatus.ACTIVE
    )
    exit_reason = models.CharField(max_length=40, blank=True)
    next_position = models.PositiveSmallIntegerField(default=1)
    due_at = models.DateTimeField(null=True, blank=True)
    deferrals = models.PositiveSmallIntegerField(default=0)
    last_deferral = models.CharField(max_length=20, blank=True)
    enrolled_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    converted_order = models.ForeignKey(
        "orders.Order",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        ordering = ["-enrolled_at", "-id"]
        constraints = [
            # Customer first: it also serves the re-entry cooldown (a customer's enrolments in
            # a campaign are few) and merges, so no separate index is needed for them.
            models.UniqueConstraint(
                fields=["customer", "campaign", "subject_key"], name="enrolment_unique"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in EnrolmentStatus]),
                name="enrolment_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="active") | Q(due_at__isnull=False),
                name="enrolment_active_is_due",
            ),
        ]
        indexes = [
            # Due steps, claimed by the send task campaign by campaign (a paused campaign's
            # backlog is never read) in (due_at, id) order: the id too, so that a backlog due
            # at one instant (a broadcast, a restart) is read 500 rows at a time from the
            # index, not sorted whole (with its customers joined) for each batch.
            models.Index(
                fields=["campaign", "due_at", "id"],
                condition=Q(status="active"),
                name="enrolment_claim_idx",
            ),
            models.Index(fields=["campaign", "enrolled_at"], name="enrolment_campaign_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} / {self.customer_id} / {self.subject_key}"

    @classmethod
    def erase_customer_rows(cls, customer) -> int:
        """Enrolments and their messages are the campaign's record (counts, conversions):
        erasure keeps them, ends the active ones and keeps no personal field."""
        return cls.objects.filter(customer=customer, status=EnrolmentStatus.ACTIVE).update(
            status=EnrolmentStatus.EXITED, exit_reason="customer_erased", due_at=None
        )

    @classmethod
    def merge_customer_rows(cls, survivor, merged) -> int:
        """Move the merged customer's enrolments. Where both were enrolled for the same
        subject, the survivor's goes on and the other is closed and kept for the record (its
        subject key marked, so the unique constraint holds). Set-based: a few statements
        whatever her history."""
        same_subject = cls.objects.filter(
            customer=survivor,
            campaign_id=OuterRef("campaign_id"),
            subject_key=OuterRef("subject_key"),
        )
        clashes = cls.objects.filter(customer=merged).filter(Exists(same_subject))
        clashes.filter(status=EnrolmentStatus.ACTIVE).update(
            status=EnrolmentStatus.EXITED, exit_reason="merged", due_at=None
        )
        clashes.update(
            subject_key=Left(
                Concat(
                    F("subject_key"),
                    Value("#merged-"),
                    Cast("pk", models.CharField()),
                    output_field=models.CharField(),
                ),
                100,
            )
        )
        return cls.objects.filter(customer=merged).update(customer=survivor)


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"


class SuppressionReason(models.TextChoices):
    NO_CONSENT = "no_consent", "No consent"
    CAPPED = "capped", "Frequency cap"
    QUIET_HOURS = "quiet_hours", "Quiet hours"
    EXITED = "exited", "Exited"
    NO_ADDRESS = "no_address", "No address"
    HOLDOUT = "holdout", "Holdout"
    NO_RENDITION = "no_rendition", "No rendition for the channel"
    NO_CHANNEL = "no_channel", "No channel of the step is enabled"


class Message(models.Model):
    """The outbox: one message of one step to one customer, created before the backend is
    called, so it is sent at most once whatever the retries."""

    # The unique constraint leads with the enrolment and an index below with the campaign:
    # no index of their own (each would cost every message insert).
    enrolment = models.ForeignKey(
        Enrolment, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    step = models.ForeignKey(CampaignStep, on_delete=models.CASCADE, related_name="messages")
    # Indexed by the composite index below, which starts with the customer.
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_marketing = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=MessageStatus.choices)
    reason = models.CharField(
        max_length=20, blank=True, help_text="Why it was suppressed (or the failure's kind)."
    )
    detail = models.CharField(max_length=500, blank=True)
    to = models.CharField(max_length=255, blank=True, help_text="The address used.")
    preview = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sending_since = models.DateTimeField(null=True, blank=True)
    provider_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True, help_text="The first click.")
    last_clicked_at = models.DateTimeField(
        null=True, blank=True, help_text="The latest click (attribution follows it)."
    )
    clicks = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["enrolment", "step"], name="message_once_per_step"),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in MessageStatus]),
                name="message_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="suppressed") | ~Q(reason=""),
                name="message_suppressed_has_reason",
            ),
        ]
        indexes = [
            # Messages waiting for the backend (and retries), read campaign by campaign in
            # the order they go: a paused campaign's queue is never read.
            models.Index(
                fields=["campaign", "next_attempt_at", "id"],
                condition=Q(status="queued"),
                name="message_queue_idx",
            ),
            models.Index(
                fields=["sending_since"], condition=Q(status="sending"), name="message_sending_idx"
            ),
            # The frequency cap and attribution: a customer's messages per channel in time.
            models.Index(fields=["customer", "channel", "created_at"], name="message_customer_idx"),
            models.Index(fields=["campaign", "created_at"], name="message_campaign_idx"),
            # Time-range reads (rollups, the admin): a message's times all follow its creation
            # (sent, delivered and clicked after it), so ranges on them are bounded by this.
            models.Index(fields=["created_at"], name="message_created_idx"),
            # Delivery receipts name the provider's id.
            models.Index(
                fields=["provider_id"], condition=~Q(provider_id=""), name="message_provider_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"Message {self.pk} ({self.status})"

    @classmethod
    def erase_customer_rows(cls, customer) -> int:
        """Messages are the record of what was sent: erasure keeps the counts and blanks the
        address and the preview."""
        return cls.objects.filter(customer=customer).update(to="", preview="", detail="")


class Attribution(models.Model):
    """An order credited to the campaign message the customer last clicked (or received, per
    channel rule) inside the campaign's window."""

    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="attributions")
    step = models.ForeignKey(CampaignStep, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attributions")
    basis = models.CharField(max_length=10, choices=AttributeOn.choices)
    touched_at = models.DateTimeField(help_text="The click or delivery it follows.")
    revenue = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    placed_at = models.DateTimeField()
    attributed_at = models.DateTimeField()

    class Meta:
        ordering = ["-placed_at"]
        indexes = [
            models.Index(fields=["campaign", "placed_at"], name="attribution_campaign_idx"),
            models.Index(fields=["channel", "placed_at"], name="attribution_channel_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} -> {self.campaign_id} ({self.channel_id})"


class ChannelDailyStat(models.Model):
    """Per day and channel: customers active, orders and revenue (sales channels); messages
    sent, delivered, clicked and the orders they brought (messaging channels)."""

    day = models.DateField()
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    active_customers = models.PositiveIntegerField(default=0)
    orders = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    buyers = models.PositiveIntegerField(default=0)
    messages_sent = models.PositiveIntegerField(default=0)
    messages_delivered = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    attributed_orders = models.PositiveIntegerField(default=0)
    attributed_revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    refreshed_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["day", "channel"], name="channel_daily_stat_unique")
        ]

    def __str__(self) -> str:
        return f"{self.channel_id} on {self.day}"


class CampaignDailyStat(models.Model):
    day = models.DateField()
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="daily_stats")
    enrolled = models.PositiveIntegerField(default=0)
    held_out = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    clicked = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(default=0)
    converted = models.PositiveIntegerField(default=0)
    holdout_converted = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    refreshed_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "campaign"]
        constraints = [
            models.UniqueConstraint(fields=["day", "campaign"], name="campaign_daily_stat_unique")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} on {self.day}"


class AudienceSnapshot(models.Model):
    """How customers use channels, taken by the hourly rollup: how many use two or more
    channels and which messaging channel they prefer."""

    taken_at = models.DateTimeField(db_index=True)
    customers = models.PositiveIntegerField()
    multichannel_customers = models.PositiveIntegerField()
    channels_used = models.JSONField(
        default=dict, help_text="Number of channels used -> customers."
    )
    preferred_channels = models.JSONField(
        default=dict, help_text="Preferred messaging channel code -> customers."
    )

    class Meta:
        ordering = ["-taken_at"]

    def __str__(self) -> str:
        return f"Audience at {self.taken_at:%Y-%m-%d %H:%M}"


class SignageScan(models.Model):
    """Scans of a product's in-store QR sign, per day and store (the sign links the product
    page online to the store it hangs in)."""

    day = models.DateField()
    store = models.ForeignKey("inventory.Location", on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey("catalog.Variant", on_delete=models.CASCADE, related_name="+")
    scans = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["day", "store", "variant"], name="signage_scan_unique")
        ]

    def __str__(self) -> str:
        return f"{self.variant_id} at {self.store_id} on {self.day}: {self.scans}"
