import django_filters

from catalog.validators import normalize_sku
from inventory.models import (
    CountKind,
    CountStatus,
    Location,
    LocationKind,
    Reservation,
    ReservationKind,
    ReservationStatus,
    StockCount,
    Transfer,
    TransferStatus,
)
from omni.api.filters import BooleanFilter


def _location_code(field_name: str, help_text: str = "Location code.") -> django_filters.Filter:
    return django_filters.CharFilter(field_name=f"{field_name}__code", help_text=help_text)


class LocationFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=LocationKind.choices)
    is_active = BooleanFilter()
    ships_online_orders = BooleanFilter()
    offers_pickup = BooleanFilter()

    class Meta:
        model = Location
        fields = ["kind", "is_active", "ships_online_orders", "offers_pickup"]


class StockCountFilter(django_filters.FilterSet):
    location = _location_code("location")
    status = django_filters.ChoiceFilter(choices=CountStatus.choices)
    kind = django_filters.ChoiceFilter(choices=CountKind.choices)

    class Meta:
        model = StockCount
        fields = ["location", "status", "kind"]


class TransferFilter(django_filters.FilterSet):
    from_location = _location_code("from_location", "Source location code.")
    to_location = _location_code("to_location", "Destination location code.")
    status = django_filters.ChoiceFilter(choices=TransferStatus.choices)

    class Meta:
        model = Transfer
        fields = ["from_location", "to_location", "status"]


class ReservationFilter(django_filters.FilterSet):
    reference = django_filters.CharFilter(help_text="Your order or checkout id.")
    line_reference = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=ReservationStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ReservationKind.choices)
    channel = django_filters.CharFilter(field_name="channel__code", help_text="Channel code.")
    location = _location_code("location")
    sku = django_filters.CharFilter(method="filter_sku")

    class Meta:
        model = Reservation
        fields = ["reference", "line_reference", "status", "kind", "channel", "location", "sku"]

    def filter_sku(self, queryset, name, value):
        return queryset.filter(variant__sku=normalize_sku(value))
