import django_filters
from django import forms

from omni.api.filters import BooleanFilter
from orders.models import FulfilmentMethod, Order, OrderStatus


class IdFilter(django_filters.NumberFilter):
    """A whole-number id (``NumberFilter`` takes decimals)."""

    field_class = forms.IntegerField


class OrderFilter(django_filters.FilterSet):
    channel = django_filters.CharFilter(field_name="channel__code", help_text="Channel code.")
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices)
    fulfilment_method = django_filters.ChoiceFilter(choices=FulfilmentMethod.choices)
    store = django_filters.CharFilter(
        field_name="store__code", help_text="Location code of the pickup or in-store store."
    )
    customer = IdFilter(field_name="customer_id", help_text="Customer id.")
    placed_after = django_filters.IsoDateTimeFilter(
        field_name="placed_at", lookup_expr="gte", help_text="Placed at or after this time."
    )
    placed_before = django_filters.IsoDateTimeFilter(
        field_name="placed_at", lookup_expr="lt", help_text="Placed before this time."
    )
    external_reference = django_filters.CharFilter(help_text="The channel's own order id.")
    needs_attention = BooleanFilter(help_text="Orders staff must look at (true) or others.")

    class Meta:
        model = Order
        fields = [
            "channel",
            "status",
            "fulfilment_method",
            "store",
            "customer",
            "placed_after",
            "placed_before",
            "external_reference",
            "needs_attention",
        ]
