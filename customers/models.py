"""Unified customer profiles: one customer across channels, found again by any identifier.

A ``Customer`` is the person; ``Identity`` rows are the identifiers channels know her by
(email, phone, loyalty card, ...), each unique and pointing at one customer. ``Touchpoint`` rows
are her timeline across channels; ``Consent`` keeps the opt-in and opt-out history per messaging
channel and ``ConsentState`` the current answer, one row per customer and channel.

Every model with a foreign key to ``Customer`` follows the customer through a merge (see
``customers.services.merge``): later apps (carts, orders, messages) join in just by pointing a
foreign key at ``Customer``; a model whose rows must be combined rather than moved declares
``merge_customer_rows(survivor, merged)``.
"""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from inventory.models import validate_time_zone
from omni.models import MESSAGING_KINDS, Channel


class IdentityKind(models.TextChoices):
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone"
    LOYALTY_CARD = "loyalty_card", "Loyalty card"
    POS_CUSTOMER_ID = "pos_customer_id", "POS customer id"
    APP_DEVICE = "app_device", "App device"
    SOCIAL_HANDLE = "social_handle", "Social handle"
    WEB_COOKIE = "web_cookie", "Web cookie id"


class AgeRange(models.TextChoices):
    UNDER_18 = "under_18", "Under 18"
    A18_24 = "18_24", "18-24"
    A25_34 = "25_34", "25-34"
    A35_44 = "35_44", "35-44"
    A45_54 = "45_54", "45-54"
    A55_64 = "55_64", "55-64"
    A65_PLUS = "65_plus", "65 and over"


class Gender(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    NON_BINARY = "non_binary", "Non-binary"
    UNDISCLOSED = "undisclosed", "Prefers not to say"


class PreferenceSource(models.TextChoices):
    INFERRED = "inferred", "Inferred from use"
    CUSTOMER = "customer", "Set by the customer"


# Profile fields that a merge resolves by "newest non-empty value wins" and that the API and the
# admin may write. Their last change is kept in ``Customer.field_times``.
PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "age_range",
    "gender",
    "city",
    "occupation",
    "language",
    "time_zone",
    "home_store",
)


class Customer(models.Model):
    """One person across every channel."""

    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    age_range = models.CharField(max_length=10, choices=AgeRange.choices, blank=True)
    gender = models.CharField(max_length=12, choices=Gender.choices, blank=True)
    city = models.CharField(max_length=100, blank=True)
    occupation = models.CharField(max_length=100, blank=True)
    language = models.CharField(
        max_length=10, blank=True, help_text="Language for messages (e.g. en, fr, pt-BR)."
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="For quiet hours, e.g. Europe/Paris. Empty: the home store's or the site's.",
    )
    preferred_channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        limit_choices_to={"kind__in": MESSAGING_KINDS},
        help_text="The messaging channel to use first.",
    )
    preferred_channel_source = models.CharField(
        max_length=10, choices=PreferenceSource.choices, default=PreferenceSource.INFERRED
    )
    home_store = models.ForeignKey(
        "inventory.Location",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="home_customers",
    )
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_purchase_at = models.DateTimeField(null=True, blank=True)
    lifetime_orders = models.PositiveIntegerField(default=0)
    lifetime_revenue = models.DecimalField(
        max_digits=14, decimal_places=2, default=0, validators=[MinValueValidator(0)]
    )
    field_times = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="When each profile field was last set (ISO times); merges keep the newest.",
    )
    erased_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["last_seen_at"], name="customer_last_seen_idx"),
            models.Index(fields=["last_purchase_at"], name="customer_last_purchase_idx"),
            models.Index(fields=["lifetime_revenue"], name="customer_revenue_idx"),
            models.Index(fields=["home_store"], name="customer_home_store_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(lifetime_revenue__gte=0), name="customer_revenue_not_negative"
            ),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name or 'Customer'} #{self.pk}"

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Identity(models.Model):
    """An identifier a channel knows the customer by, stored normalised and unique."""

    # Indexed by the composite index below, which starts with the customer.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="identities", db_index=False
    )
    kind = models.CharField(max_length=20, choices=IdentityKind.choices)
    value = models.CharField(
        max_length=255,
        help_text="Normalised: emails case-folded, phones in E.164, social handles as "
        "network:handle.",
    )
    verified = models.BooleanField(default=False)
    source = models.CharField(max_length=80, blank=True, help_text="Channel or sender.")
    first_seen_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "identities"
        ordering = ["kind", "value"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="identity_kind_value_unique"),
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in IdentityKind]), name="identity_kind_valid"
            ),
            models.CheckConstraint(condition=~Q(value=""), name="identity_value_not_empty"),
        ]
        indexes = [models.Index(fields=["customer", "kind"], name="identity_customer_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class IdentityKindRule(models.Model):
    """Staff settings per identifier kind: whether two profiles sharing it are one person."""

    kind = models.CharField(max_length=20, choices=IdentityKind.choices, unique=True)
    may_merge = models.BooleanField(
        default=True,
        help_text="When off, this identifier never merges two customers (a shared tablet, a "
        "web cookie): it finds a customer only when no other identifier does.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]
        verbose_name = "identifier rule"

    def __str__(self) -> str:
        return self.get_kind_display()


class BlockedIdentifier(models.Model):
    """A value never used to identify anyone (a store's own email, a demo phone number)."""

    kind = models.CharField(max_length=20, choices=IdentityKind.choices)
    value = models.CharField(max_length=255, help_text="Entered as usual; stored normalised.")
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "value"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="blocked_identifier_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class TouchpointKind(models.TextChoices):
    PRODUCT_VIEW = "product_view", "Product view"
    SEARCH = "search", "Search"
    ADD_TO_CART = "add_to_cart", "Add to cart"
    REMOVE_FROM_CART = "remove_from_cart", "Remove from cart"
    CHECKOUT_STARTED = "checkout_started", "Checkout started"
    PURCHASE = "purchase", "Purchase"
    # Takes back the purchase with the same ``properties.order`` (counters, last purchase).
    ORDER_CANCELLED = "order_cancelled", "Order cancelled"
    RETURN = "return", "Return"
    STORE_VISIT = "store_visit", "Store visit"
    PICKUP = "pickup", "Pickup"
    SUPPORT_MESSAGE = "support_message", "Support message"
    MESSAGE_SENT = "message_sent", "Message sent"
    MESSAGE_OPENED = "message_opened", "Message opened"
    LINK_CLICKED = "link_clicked", "Link clicked"
    QR_SCAN = "qr_scan", "QR code scanned"
    APP_OPEN = "app_open", "App opened"
    SIGN_UP = "sign_up", "Sign-up"
    CONSENT_CHANGED = "consent_changed", "Consent changed"
    PROFILE_UPDATED = "profile_updated", "Profile updated"


class Touchpoint(models.Model):
    """One event on the customer's timeline, from any channel."""

    # Indexed by the composite index below, which starts with the customer.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="touchpoints", db_index=False
    )
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=30, choices=TouchpointKind.choices)
    occurred_at = models.DateTimeField()
    location = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    properties = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=80, help_text="Who sent it: client:<id> or user:<id>.")
    event_id = models.CharField(max_length=100, help_text="The sender's id; unique per sender.")
    received_at = models.DateTimeField()
    # The event as the timeline API writes it, after its id, written once at ingest on
    # PostgreSQL (see customers.timeline_json); NULL where the timeline computes it instead.
    rendition = models.TextField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "event_id"], name="touchpoint_event_unique"),
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in TouchpointKind]),
                name="touchpoint_kind_valid",
            ),
        ]
        indexes = [
            # The timeline: a customer's events, newest first.
            models.Index(
                fields=["customer", "-occurred_at", "-id"], name="touchpoint_timeline_idx"
            ),
            # Time-range scans (segments "within N days", trigger detection).
            models.Index(fields=["occurred_at"], name="touchpoint_time_idx"),
            models.Index(fields=["kind", "occurred_at"], name="touchpoint_kind_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.channel_id} at {self.occurred_at:%Y-%m-%d}"


class CustomerChannelStat(models.Model):
    """How a customer uses a channel: the rollup behind "channels used" and the inferred
    preferred channel, kept current by touchpoint ingest."""

    # Indexed by the composite index below, which starts with the customer.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="channel_stats", db_index=False
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    touchpoints = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "channel"], name="customer_channel_stat_unique"
            ),
        ]
        indexes = [models.Index(fields=["channel", "customer"], name="channel_stat_channel_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id} on {self.channel_id}: {self.touchpoints}"

    @classmethod
    def merge_customer_rows(cls, survivor, merged) -> int:
        from customers.services.stats import channel_stats_merge

        return channel_stats_merge(survivor=survivor, merged=merged)


class ConsentStatus(models.TextChoices):
    OPTED_IN = "opted_in", "Opted in"
    OPTED_OUT = "opted_out", "Opted out"


class Consent(models.Model):
    """One opt-in or opt-out, kept for ever as the proof of what the customer said when."""

    # Indexed by the composite index below, which starts with the customer.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="consents", db_index=False
    )
    channel = models.ForeignKey(
        Channel,
        on_delete=models.PROTECT,
        related_name="+",
        limit_choices_to={"kind__in": MESSAGING_KINDS},
    )
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    source = models.CharField(
        max_length=80, help_text="Where it was given: web form, store, API client, admin."
    )
    occurred_at = models.DateTimeField(help_text="When the customer said so.")
    proof = models.TextField(blank=True, help_text="Form text, IP address, signature reference.")
    recorded_at = models.DateTimeField()
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in ConsentStatus]),
                name="consent_status_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["customer", "channel", "-occurred_at"], name="consent_history_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_status_display()} on {self.channel_id} at {self.occurred_at:%Y-%m-%d}"


class ConsentState(models.Model):
    """The current consent of a customer on a messaging channel: the latest ``Consent`` by the
    time the customer gave it. One row per pair, read in one query by campaigns."""

    # Indexed by the composite index below, which starts with the customer.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="consent_states", db_index=False
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    occurred_at = models.DateTimeField()
    consent = models.ForeignKey(Consent, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "channel"], name="consent_state_unique"),
        ]
        indexes = [
            models.Index(fields=["channel", "status", "customer"], name="consent_state_channel_idx")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} on {self.channel_id}: {self.status}"

    @classmethod
    def merge_customer_rows(cls, survivor, merged) -> int:
        from customers.services.consent import consent_states_merge

        return consent_states_merge(survivor=survivor, merged=merged)


class ConversationStatus(models.TextChoices):
    OPEN = "open", "Open"
    WAITING = "waiting", "Waiting for the customer"
    CLOSED = "closed", "Closed"


class Conversation(models.Model):
    """A support thread; messages from any channel append to it."""

    # Indexed by the composite index below, which starts with the customer.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="conversations", db_index=False
    )
    subject = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=10, choices=ConversationStatus.choices, default=ConversationStatus.OPEN
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_conversations",
    )
    started_on = models.ForeignKey(
        Channel,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Channel of the first message.",
    )
    created_at = models.DateTimeField()
    last_message_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in ConversationStatus]),
                name="conversation_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "status"], name="conversation_customer_idx"),
            models.Index(fields=["status", "-last_message_at"], name="conversation_queue_idx"),
        ]

    def __str__(self) -> str:
        return self.subject or f"Conversation #{self.pk}"


class MessageDirection(models.TextChoices):
    INBOUND = "inbound", "From the customer"
    OUTBOUND = "outbound", "To the customer"


class ConversationMessage(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="+")
    direction = models.CharField(max_length=10, choices=MessageDirection.choices)
    body = models.TextField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=80)
    external_id = models.CharField(
        max_length=200, blank=True, help_text="The sender's message id; a repeat is ignored."
    )
    sent_at = models.DateTimeField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["sent_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~Q(external_id=""),
                name="conversation_message_external_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "sent_at"], name="conversation_message_idx")
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} on {self.channel_id}"


class SegmentMatch(models.TextChoices):
    ALL = "all", "All rules"
    ANY = "any", "Any rule"


class Segment(models.Model):
    """A group of customers described by rules staff compose in the admin."""

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    match = models.CharField(max_length=5, choices=SegmentMatch.choices, default=SegmentMatch.ALL)
    member_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    counted_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SegmentRuleKind(models.TextChoices):
    CHANNEL_USED = "channel_used", "Has used channel"
    PURCHASED_WITHIN = "purchased_within", "Purchased within the last N days"
    REVENUE_AT_LEAST = "revenue_at_least", "Lifetime revenue at least"
    ORDERS_AT_LEAST = "orders_at_least", "Lifetime orders at least"
    HOME_STORE = "home_store", "Home store is"
    ATTRIBUTE = "attribute", "Persona attribute is"
    CONSENT = "consent", "Has opted in on channel"
    TOUCHPOINT_WITHIN = "touchpoint_within", "Had a touchpoint of kind within the last N days"
    SEEN_WITHIN = "seen_within", "Seen within the last N days"
    HAS_OPEN_CART = "has_open_cart", "Has an open cart (optionally on a channel)"


class SegmentAttribute(models.TextChoices):
    AGE_RANGE = "age_range", "Age range"
    GENDER = "gender", "Gender"
    CITY = "city", "City"
    OCCUPATION = "occupation", "Occupation"
    LANGUAGE = "language", "Language"


class SegmentRule(models.Model):
    """One condition of a segment; which fields it reads depends on its kind."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=30, choices=SegmentRuleKind.choices)
    negate = models.BooleanField(default=False, help_text="Match customers the rule excludes.")
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    days = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    location = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    attribute = models.CharField(max_length=20, choices=SegmentAttribute.choices, blank=True)
    value = models.CharField(max_length=100, blank=True)
    touchpoint_kind = models.CharField(max_length=30, choices=TouchpointKind.choices, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        from customers.segments import rule_description

        return rule_description(self)

    def clean(self):
        from django.core.exceptions import ValidationError

        from customers.segments import rule_errors

        errors = rule_errors(self)
        if errors:
            raise ValidationError(errors)


class CustomerMerge(models.Model):
    """The audit row of a merge: who was folded into whom, why, and what changed."""

    survivor = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges")
    merged_customer_id = models.BigIntegerField(db_index=True)
    merged_snapshot = models.JSONField(help_text="The merged profile as it was.")
    field_changes = models.JSONField(
        default=dict, help_text="Field: survivor's value, merged value, result."
    )
    moved = models.JSONField(default=dict, help_text="Rows moved per model.")
    reason = models.CharField(max_length=200)
    source = models.CharField(max_length=80, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.merged_customer_id} into #{self.survivor_id}"

    @classmethod
    def merge_customer_rows(cls, survivor, merged) -> int:
        return cls.objects.filter(survivor=merged).update(survivor=survivor)


class PrivacyRequestKind(models.TextChoices):
    EXPORT = "export", "Export"
    ERASE = "erase", "Erase"


class PrivacyRequest(models.Model):
    """A record of each export or erasure of a customer's data."""

    customer_id_ref = models.BigIntegerField("customer id", db_index=True)
    kind = models.CharField(max_length=10, choices=PrivacyRequestKind.choices)
    reason = models.CharField(max_length=200, blank=True)
    summary = models.JSONField(default=dict)
    source = models.CharField(max_length=80, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of customer #{self.customer_id_ref}"
