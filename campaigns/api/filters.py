import django_filters
from django import forms

from campaigns.models import (
    BackInStockSubscription,
    Campaign,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    Message,
    MessageStatus,
    Trigger,
)
from catalog.validators import normalize_sku
from omni.api.filters import BooleanFilter


class IdFilter(django_filters.NumberFilter):
    """A whole-number id (``NumberFilter`` takes decimals)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class SkuFilter(django_filters.CharFilter):
    def filter(self, qs, value):
        if value in django_filters.constants.EMPTY_VALUES:
            return qs
        return qs.filter(variant__sku=normalize_sku(value))


class SubscriptionFilter(django_filters.FilterSet):
    customer = IdFilter(field_name="customer_id", help_text="Customer id.")
    sku = SkuFilter(help_text="SKU (case-insensitive).")
    channel = django_filters.CharFilter(field_name="channel__code", help_text="Sales channel code.")
    waiting = BooleanFilter(
        field_name="notified_at",
        lookup_expr="isnull",
        help_text="Still waiting (true) or already used by a back-in-stock campaign (false).",
    )

    class Meta:
        model = BackInStockSubscription
        fields = ["customer", "sku", "channel", "waiting"]


class CampaignFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=CampaignStatus.choices)
    trigger = django_filters.ChoiceFilter(choices=Trigger.choices)

    class Meta:
        model = Campaign
        fields = ["status", "trigger"]


class MessageFilter(django_filters.FilterSet):
    customer = IdFilter(field_name="customer_id", required=True, help_text="Customer id.")
    campaign = IdFilter(field_name="campaign_id", help_text="Campaign id.")
    channel = django_filters.CharFilter(
        field_name="channel__code", help_text="Messaging channel code."
    )
    status = django_filters.ChoiceFilter(choices=MessageStatus.choices)

    class Meta:
        model = Message
        fields = ["customer", "campaign", "channel", "status"]


class EnrolmentFilter(django_filters.FilterSet):
    customer = IdFilter(field_name="customer_id", help_text="Customer id.")
    campaign = IdFilter(field_name="campaign_id", help_text="Campaign id.")
    status = django_filters.ChoiceFilter(choices=EnrolmentStatus.choices)

    class Meta:
        model = Enrolment
        fields = ["customer", "campaign", "status"]
