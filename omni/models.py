"""Core models: channels, API clients, idempotency keys and the domain event outbox."""

import hashlib

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q


class ChannelKind(models.TextChoices):
    # Sales channels
    STORE_POS = "store_pos", "Store (point of sale)"
    WEB = "web", "Web shop"
    APP = "app", "Mobile app"
    SOCIAL = "social", "Social commerce"
    MARKETPLACE = "marketplace", "Marketplace"
    # Messaging channels
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PUSH = "push", "Push notification"
    SOCIAL_DM = "social_dm", "Social direct message"
    ADS_AUDIENCE = "ads_audience", "Ads audience"


SALES_KINDS = (
    ChannelKind.STORE_POS,
    ChannelKind.WEB,
    ChannelKind.APP,
    ChannelKind.SOCIAL,
    ChannelKind.MARKETPLACE,
)
MESSAGING_KINDS = (
    ChannelKind.EMAIL,
    ChannelKind.SMS,
    ChannelKind.PUSH,
    ChannelKind.SOCIAL_DM,
    ChannelKind.ADS_AUDIENCE,
)

code_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]*$",
    "Use lower-case letters, digits, '-' and '_', starting with a letter or digit.",
)


class ChannelQuerySet(models.QuerySet):
    def sales(self):
        return self.filter(kind__in=SALES_KINDS)

    def messaging(self):
        return self.filter(kind__in=MESSAGING_KINDS)

    def active(self):
        return self.filter(is_active=True)


class Channel(models.Model):
    """A way the retailer sells (store, web, app, ...) or talks to customers (email, SMS, ...)."""

    code = models.CharField(max_length=40, unique=True, validators=[code_validator])
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices, db_index=True)
    currency = models.CharField(
        max_length=3,
        blank=True,
        help_text="Default currency of prices on this sales channel (ISO 4217).",
        validators=[RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code.")],
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChannelQuerySet.as_manager()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in ChannelKind]),
                name="channel_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def is_sales(self) -> bool:
        return self.kind in SALES_KINDS

    @property
    def is_messaging(self) -> bool:
        return self.kind in MESSAGING_KINDS


class ApiClientAccess(models.TextChoices):
    READ = "read", "Read only"
    WRITE = "write", "Read and write"


class ApiClient(models.Model):
    """An integrator (POS, web shop, marketplace, PIM, ...) that calls the API with a token.

    The token is shown once when it is issued; only its SHA-256 hash is stored. Its first
    characters (the prefix) find the row without scanning.
    """

    name = models.CharField(max_length=120, unique=True)
    channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_clients",
        help_text="The channel this integrator speaks for, if any.",
    )
    access = models.CharField(
        max_length=10, choices=ApiClientAccess.choices, default=ApiClientAccess.READ
    )
    is_active = models.BooleanField(default=True)
    token_prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    token_issued_at = models.DateTimeField(null=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "API client"

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @property
    def can_write(self) -> bool:
        return self.access == ApiClientAccess.WRITE


class IdempotencyStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"


class IdempotencyKey(models.Model):
    """The first response to a POST carrying an ``Idempotency-Key``, replayed on repeats."""

    principal = models.CharField(max_length=80)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=IdempotencyStatus.choices)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    locked_until = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["principal", "key"], name="idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.principal}:{self.key}"


class OutboxEvent(models.Model):
    """A domain event written in the same transaction as the change it describes.

    Later issues deliver these as webhooks and use them as triggers; ``delivered_at`` marks
    those the dispatcher has handed on.
    """

    type = models.CharField(max_length=100, db_index=True)
    subject_type = models.CharField(max_length=60)
    subject_id = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["subject_type", "subject_id"], name="outbox_subject_idx"),
            models.Index(
                fields=["id"], condition=Q(delivered_at__isnull=True), name="outbox_pending_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.subject_type}:{self.subject_id}"
