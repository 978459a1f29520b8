import django_filters
from django.db.models import Exists, OuterRef, Q

from catalog.models import ChannelListing, Product, Variant
from omni.api.filters import BooleanFilter


def changed_since_filter(help_text: str) -> django_filters.IsoDateTimeFilter:
    """``updated_at >=`` an ISO 8601 date-time (naive ones in the default time zone)."""
    return django_filters.IsoDateTimeFilter(
        field_name="updated_at",
        lookup_expr="gte",
        help_text=help_text,
        error_messages={"invalid": "Enter an ISO 8601 date-time."},
    )


class _CatalogFilterSet(django_filters.FilterSet):
    channel = django_filters.CharFilter(
        method="filter_channel", help_text="Only items listed on this channel (code)."
    )
    published = BooleanFilter(
        method="filter_published",
        help_text="With `channel`: published there; without: published on some channel.",
    )
    brand = django_filters.CharFilter(field_name="brand__name", help_text="Brand name.")
    category = django_filters.CharFilter(
        method="filter_category", help_text='Category path, including sub-categories ("Apparel").'
    )
    changed_since = changed_since_filter("Changed at or after (ISO 8601).")
    is_active = BooleanFilter()
    prefix = ""

    def _listings(self):
        return ChannelListing.objects.filter(**{f"{self.listing_field}": OuterRef("pk")})

    def filter_channel(self, queryset, name, value):
        return queryset.filter(Exists(self._listings().filter(channel__code=value)))

    def filter_published(self, queryset, name, value):
        listings = self._listings().filter(is_published=True)
        channel = self.form.cleaned_data.get("channel")
        if channel:
            listings = listings.filter(channel__code=channel)
        return queryset.filter(Exists(listings) if value else ~Exists(listings))

    def filter_category(self, queryset, name, value):
        path = " > ".join(p.strip() for p in value.split(">") if p.strip())
        field = f"{self.prefix}category__path"
        return queryset.filter(Q(**{field: path}) | Q(**{f"{field}__startswith": f"{path} > "}))


class ProductFilter(_CatalogFilterSet):
    listing_field = "product_id"
    q = django_filters.CharFilter(method="filter_q", help_text="Search title, handle or SKU.")

    class Meta:
        model = Product
        fields = ["is_active"]

    def filter_q(self, queryset, name, value):
        skus = Variant.objects.filter(product_id=OuterRef("pk"), sku__istartswith=value)
        return queryset.filter(
            Q(title__icontains=value) | Q(handle__icontains=value) | Exists(skus)
        )


class VariantFilter(_CatalogFilterSet):
    listing_field = "variant_id"
    prefix = "product__"
    brand = django_filters.CharFilter(field_name="product__brand__name", help_text="Brand name.")
    product = django_filters.CharFilter(field_name="product__handle", help_text="Product handle.")
    gtin = django_filters.CharFilter(field_name="gtin")

    class Meta:
        model = Variant
        fields = ["is_active"]


class VariantChangesFilter(django_filters.FilterSet):
    since = changed_since_filter("Changed at or after (ISO 8601).")

    class Meta:
        model = Variant
        fields = []
