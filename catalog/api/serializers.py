"""Input and output serializers of the catalog API. No rules here: services hold them."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.models import Product
from catalog.selectors import listing_to_dict


class ProductSummarySerializer(serializers.Serializer):
    handle = serializers.CharField()
    title = serializers.CharField()
    brand = serializers.CharField()
    category = serializers.CharField()


class ListingOutputSerializer(serializers.Serializer):
    channel = serializers.CharField()
    is_published = serializers.BooleanField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    title = serializers.CharField()
    available_from = serializers.DateTimeField(allow_null=True)
    available_until = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class VariantOutputSerializer(serializers.Serializer):
    sku = serializers.CharField()
    gtin = serializers.CharField(allow_null=True)
    option_values = serializers.DictField(child=serializers.CharField())
    weight_grams = serializers.IntegerField(allow_null=True)
    base_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    is_active = serializers.BooleanField()
    updated_at = serializers.DateTimeField()
    product = ProductSummarySerializer()
    listings = ListingOutputSerializer(many=True)


class ProductVariantSerializer(serializers.Serializer):
    sku = serializers.CharField()
    gtin = serializers.CharField(allow_null=True)
    option_values = serializers.DictField(child=serializers.CharField())
    weight_grams = serializers.IntegerField(allow_null=True)
    base_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    is_active = serializers.BooleanField()
    listings = serializers.SerializerMethodField()

    @extend_schema_field(ListingOutputSerializer(many=True))
    def get_listings(self, variant) -> list[dict]:
        return ListingOutputSerializer(
            [
                listing_to_dict(listing, variant.product.title)
                for listing in sorted(variant.listings.all(), key=lambda x: x.channel.code)
            ],
            many=True,
        ).data


class ProductOutputSerializer(serializers.ModelSerializer):
    brand = serializers.CharField(source="brand.name")
    category = serializers.CharField(source="category.path")
    variants = ProductVariantSerializer(many=True)

    class Meta:
        model = Product
        fields = [
            "handle",
            "title",
            "description",
            "brand",
            "category",
            "attributes",
            "is_active",
            "created_at",
            "updated_at",
            "variants",
        ]


class VariantInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    gtin = serializers.CharField(max_length=20, required=False, allow_null=True, allow_blank=True)
    option_values = serializers.DictField(child=serializers.CharField(), required=False)
    weight_grams = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    base_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)
    is_active = serializers.BooleanField(required=False, default=True)


class VariantCreateInputSerializer(VariantInputSerializer):
    product = serializers.CharField(help_text="Handle of the product this variant belongs to.")


class VariantChangeOutputSerializer(VariantOutputSerializer):
    """A variant in the changes feed (its own name: that feed's pages have no ``count``)."""


class VariantUpdateInputSerializer(serializers.Serializer):
    sku = serializers.CharField(
        max_length=64,
        required=False,
        help_text="Read only: may be sent, but must be the variant's own SKU.",
    )
    gtin = serializers.CharField(max_length=20, required=False, allow_null=True, allow_blank=True)
    option_values = serializers.DictField(child=serializers.CharField(), required=False)
    weight_grams = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    base_price = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False
    )
    is_active = serializers.BooleanField(required=False)


class ProductCreateInputSerializer(serializers.Serializer):
    handle = serializers.SlugField(max_length=120, required=False)
    title = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    brand = serializers.CharField(max_length=120, help_text="Brand name; created if new.")
    category = serializers.CharField(
        max_length=500, help_text='Category path such as "Apparel > Tops"; created if new.'
    )
    attributes = serializers.DictField(child=serializers.CharField(), required=False)
    is_active = serializers.BooleanField(required=False, default=True)
    variants = VariantInputSerializer(many=True, required=False)


class ProductUpdateInputSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=255, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    brand = serializers.CharField(max_length=120, required=False)
    category = serializers.CharField(max_length=500, required=False)
    attributes = serializers.DictField(child=serializers.CharField(), required=False)
    is_active = serializers.BooleanField(required=False)


class ListingInputSerializer(serializers.Serializer):
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    currency = serializers.CharField(max_length=3, required=False)
    is_published = serializers.BooleanField(required=False)
    title = serializers.CharField(max_length=255, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    available_from = serializers.DateTimeField(required=False, allow_null=True)
    available_until = serializers.DateTimeField(required=False, allow_null=True)
