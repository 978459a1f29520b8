from decimal import Decimal

import factory

from catalog.models import Brand, Category, ChannelListing, Product, Variant
from catalog.validators import gtin_check_digit
from omni.models import Channel, ChannelKind


def make_gtin(n: int) -> str:
    body = f"400{n:09d}"
    return body + str(gtin_check_digit(body))


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"chan-{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    kind = ChannelKind.WEB
    currency = "EUR"


class BrandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Brand
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Brand {n}")


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("path",)

    name = factory.Sequence(lambda n: f"Category {n}")
    path = factory.LazyAttribute(lambda o: o.name)


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    handle = factory.Sequence(lambda n: f"product-{n}")
    title = factory.Sequence(lambda n: f"Product {n}")
    brand = factory.SubFactory(BrandFactory)
    category = factory.SubFactory(CategoryFactory)
    attributes = factory.LazyFunction(lambda: {"material": "Cotton"})


class VariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Variant

    product = factory.SubFactory(ProductFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    gtin = factory.Sequence(make_gtin)
    option_values = factory.LazyFunction(lambda: {"size": "M"})
    base_price = Decimal("19.99")


class ListingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChannelListing

    variant = factory.SubFactory(VariantFactory)
    product = factory.LazyAttribute(lambda o: o.variant.product)
    channel = factory.LazyFunction(lambda: Channel.objects.get(code="web"))
    is_published = True
    price = Decimal("19.99")
    currency = "EUR"


class LocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "inventory.Location"
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"loc-{n}")
    name = factory.LazyAttribute(lambda o: o.code.replace("-", " ").title())
    kind = "store"
    time_zone = "Europe/Paris"
    ships_online_orders = True
    offers_pickup = True


class StockRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "inventory.ChannelStockRule"
        django_get_or_create = ("channel", "location")

    channel = factory.LazyFunction(lambda: Channel.objects.get(code="web"))
    location = factory.SubFactory(LocationFactory)
    priority = factory.Sequence(lambda n: n + 1)
