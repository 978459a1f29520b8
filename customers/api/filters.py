import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef

from customers.identifiers import normalize
from customers.models import (
    ConsentState,
    ConsentStatus,
    Conversation,
    ConversationStatus,
    Customer,
    CustomerChannelStat,
    Identity,
    IdentityKind,
    Touchpoint,
    TouchpointKind,
)
from customers.selectors import customers_matching
from omni.api.filters import BooleanFilter


class IdentifierField(forms.CharField):
    """An identifier of one kind, normalised as ``Identity`` stores it (an invalid one is an
    error, not a filter that finds nobody)."""

    def __init__(self, *args, kind: str, **kwargs):
        self.kind = kind
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        try:
            return normalize(self.kind, value)
        except ValueError as error:
            raise ValidationError(str(error), code="invalid") from None


class IdentifierFilter(django_filters.CharFilter):
    field_class = IdentifierField

    def __init__(self, *args, kind: str, **kwargs):
        self.kind = kind
        super().__init__(*args, kind=kind, **kwargs)

    def filter(self, qs, value):
        if value in django_filters.constants.EMPTY_VALUES:
            return qs
        return qs.filter(
            Exists(Identity.objects.filter(customer_id=OuterRef("pk"), kind=self.kind, value=value))
        )


class IdFilter(django_filters.NumberFilter):
    """A whole-number id (``NumberFilter`` takes decimals)."""

    field_class = forms.IntegerField


class CustomerFilter(django_filters.FilterSet):
    identifier = django_filters.CharFilter(
        method="filter_identifier",
        help_text="Any identifier, as typed: an email in any case, a phone number in any "
        "format, a loyalty card with or without spaces, ...",
    )
    email = IdentifierFilter(kind=IdentityKind.EMAIL, help_text="Email (any case).")
    phone = IdentifierFilter(kind=IdentityKind.PHONE, help_text="Phone number (any format).")
    home_store = django_filters.CharFilter(
        field_name="home_store__code", help_text="Location code of the home store."
    )
    channel = django_filters.CharFilter(
        method="filter_channel", help_text="Code of a channel the customer used."
    )
    consent = django_filters.CharFilter(
        method="filter_consent", help_text="Code of a messaging channel the customer opted in on."
    )
    seen_after = django_filters.IsoDateTimeFilter(
        field_name="last_seen_at", lookup_expr="gte", help_text="Last seen at or after."
    )
    erased = BooleanFilter(
        method="filter_erased", help_text="Only erased customers (true) or only others (false)."
    )

    class Meta:
        model = Customer
        fields = [
            "identifier",
            "email",
            "phone",
            "home_store",
            "channel",
            "consent",
            "seen_after",
            "erased",
        ]

    def filter_identifier(self, queryset, name, value):
        return queryset.filter(pk__in=customers_matching(value).values("pk"))

    def filter_channel(self, queryset, name, value):
        return queryset.filter(
            Exists(
                CustomerChannelStat.objects.filter(customer_id=OuterRef("pk"), channel__code=value)
            )
        )

    def filter_consent(self, queryset, name, value):
        return queryset.filter(
            Exists(
                ConsentState.objects.filter(
                    customer_id=OuterRef("pk"),
                    channel__code=value,
                    status=ConsentStatus.OPTED_IN,
                )
            )
        )

    def filter_erased(self, queryset, name, value):
        return queryset.filter(erased_at__isnull=not value)


class TimelineFilter(django_filters.FilterSet):
    channel = django_filters.CharFilter(field_name="channel__code", help_text="Channel code.")
    kind = django_filters.ChoiceFilter(choices=TouchpointKind.choices)
    since = django_filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="gte", help_text="Events at or after this time."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="lt", help_text="Events before this time."
    )

    class Meta:
        model = Touchpoint
        fields = ["channel", "kind", "since", "until"]


class ConversationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ConversationStatus.choices)
    customer = IdFilter(field_name="customer_id", help_text="Customer id.")
    assignee = django_filters.CharFilter(
        field_name="assignee__username", help_text="Username of the staff member assigned."
    )

    class Meta:
        model = Conversation
        fields = ["status", "customer", "assignee"]
