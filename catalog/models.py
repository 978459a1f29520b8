"""The catalog: products, variants (SKUs), categories, brands, per-channel listings and feeds."""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper

from omni.models import SALES_KINDS, Channel

from .validators import SKU_DB_REGEX, validate_currency, validate_gtin, validate_sku


class Brand(models.Model):
    name = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    """A node of the category tree; ``path`` ("Apparel > Tops") is kept for display and import."""

    name = models.CharField(max_length=120)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    path = models.CharField(max_length=500, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["path"]
        verbose_name_plural = "categories"
        constraints = [
            models.UniqueConstraint(
                fields=["parent", "name"], name="category_unique_name_per_parent"
            ),
            models.UniqueConstraint(
                fields=["name"], condition=Q(parent__isnull=True), name="category_unique_root"
            ),
        ]

    def __str__(self) -> str:
        return self.path


class Product(models.Model):
    handle = models.SlugField(
        max_length=120,
        unique=True,
        help_text="Stable reference of the product for integrators and imports.",
    )
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="products")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    attributes = models.JSONField(
        default=dict, blank=True, help_text="Colour, model, material and other attributes."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["title", "id"]
        indexes = [models.Index(fields=["updated_at", "id"], name="product_changes_idx")]

    def __str__(self) -> str:
        return self.title


class Variant(models.Model):
    """A sellable item. Its SKU is unique and identical on every channel."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="variants")
    sku = models.CharField("SKU", max_length=64, unique=True, validators=[validate_sku])
    gtin = models.CharField(
        "GTIN",
        max_length=14,
        null=True,
        blank=True,
        validators=[validate_gtin],
        help_text="Barcode (EAN-8, UPC-A, EAN-13 or GTIN-14); the check digit is verified.",
    )
    option_values = models.JSONField(default=dict, blank=True, help_text='e.g. {"size": "M"}')
    weight_grams = models.PositiveIntegerField(null=True, blank=True)
    base_price = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(0)]
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["sku"]
        indexes = [models.Index(fields=["updated_at", "id"], name="variant_changes_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["gtin"],
                condition=Q(gtin__isnull=False),
                name="variant_gtin_unique",
                violation_error_message="A variant with this GTIN exists already.",
            ),
            models.CheckConstraint(condition=Q(sku=Upper("sku")), name="variant_sku_upper"),
            models.CheckConstraint(condition=Q(sku__regex=SKU_DB_REGEX), name="variant_sku_format"),
            models.CheckConstraint(
                condition=Q(gtin__isnull=True) | Q(gtin__regex=r"^([0-9]{8}|[0-9]{12,14})$"),
                name="variant_gtin_format",
            ),
            models.CheckConstraint(condition=Q(base_price__gte=0), name="variant_price_nonneg"),
        ]

    def __str__(self) -> str:
        return self.sku

    @property
    def options_label(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in self.option_values.items())


class ChannelListing(models.Model):
    """A variant offered on a sales channel, at that channel's price."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="listings")
    # Kept equal to variant.product by the services, so a product page can show its listings.
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="listings", editable=False
    )
    channel = models.ForeignKey(
        Channel,
        on_delete=models.PROTECT,
        related_name="listings",
        limit_choices_to={"kind__in": SALES_KINDS},
    )
    is_published = models.BooleanField(default=False)
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=3, validators=[validate_currency])
    title = models.CharField(
        max_length=255, blank=True, help_text="Channel-specific title; empty uses the product's."
    )
    description = models.TextField(blank=True)
    available_from = models.DateTimeField(null=True, blank=True)
    available_until = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["variant_id", "channel_id"]
        indexes = [
            models.Index(fields=["channel", "is_published"], name="listing_channel_pub_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["variant", "channel"], name="listing_unique"),
            models.CheckConstraint(condition=Q(price__gte=0), name="listing_price_nonneg"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="listing_currency_format"
            ),
            models.CheckConstraint(
                condition=Q(available_from__isnull=True)
                | Q(available_until__isnull=True)
                | Q(available_until__gt=F("available_from")),
                name="listing_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.variant_id} on {self.channel_id}"

    def is_available_at(self, when) -> bool:
        return (
            self.is_published
            and (self.available_from is None or self.available_from <= when)
            and (self.available_until is None or when < self.available_until)
        )


class FeedFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSON = "json", "JSON"


class ChannelFeed(models.Model):
    """How a sales channel wants its listings exported: format and fields."""

    channel = models.OneToOneField(
        Channel,
        on_delete=models.CASCADE,
        related_name="feed",
        limit_choices_to={"kind__in": SALES_KINDS},
    )
    format = models.CharField(max_length=10, choices=FeedFormat.choices, default=FeedFormat.CSV)
    fields = models.JSONField(
        default=list, help_text="Fields in order; empty means the default set."
    )
    published_only = models.BooleanField(
        default=True, help_text="Only listings published and within their availability window."
    )
    last_generated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_row_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    last_file = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["channel__code"]

    def __str__(self) -> str:
        return f"Feed of {self.channel.code} ({self.format})"
