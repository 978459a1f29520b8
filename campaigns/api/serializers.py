"""Input and output serializers of the campaigns API. No rules here: services hold them.

Input serializers check the envelope (types, sizes); the services check the rules (sales
channel, listing, erased customers, receipt transitions). Identifiers go to identity
resolution as sent, which checks them and reports errors by index. Fields with a fixed set of
values are documented as strings listing them rather than as OpenAPI enums (``status`` means
different sets on different resources).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.models import (
    CampaignStatus,
    EnrolmentStatus,
    MessageStatus,
    Purpose,
    SuppressionReason,
    Trigger,
)
from campaigns.services.receipts import RECEIPT_STATUSES, UNDELIVERED
from customers.identifiers import KINDS as IDENTITY_KINDS
from omni.api.serializers import string_input, string_output

MAX_IDENTIFIERS = 50
MAX_ID = 2**63 - 1  # ids are bigints


@extend_schema_field(OpenApiTypes.DATETIME)
class RawDateTimeField(serializers.CharField):
    """An ISO 8601 date-time with its zone, passed to the service as sent (it checks it)."""


class ObjectListField(serializers.ListField):
    """A list checked as an envelope only (a list, its size); identity resolution checks each
    item and reports them by index, as in the customers API: a value it cannot normalise, or
    one holding a NUL character (``customers.identifiers.normalize``), is a 400 with
    ``{"identifiers": {"<index>": [...]}}``. The child serializer documents the items."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return data


class CustomerIdField(serializers.IntegerField):
    """A customer id an integrator kept: a JSON whole number of a bigint's range (as the
    customers API takes it)."""

    INVALID = "A customer id (a whole number)."
    default_error_messages = {
        "invalid": INVALID,
        "min_value": INVALID,
        "max_value": INVALID,
        "max_string_length": INVALID,
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("default", None)
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


# --- Subscriptions ----------------------------------------------------------------------------


class SubscriptionIdentifierInputSerializer(serializers.Serializer):
    """An identifier as the channel knows the customer (documentation: identity resolution
    normalises and checks it)."""

    kind = string_input(IDENTITY_KINDS)
    value = serializers.CharField(
        help_text="As the channel has it: emails in any case, phone numbers in any format."
    )
    network = serializers.CharField(
        required=False, help_text="Social handles: the network (e.g. `instagram`)."
    )
    verified = serializers.BooleanField(
        required=False, default=False, help_text="The channel checked it (a confirmed email)."
    )


class SubscriptionCreateInputSerializer(serializers.Serializer):
    customer = CustomerIdField(help_text="A customer id you kept; required without identifiers.")
    identifiers = ObjectListField(
        child=SubscriptionIdentifierInputSerializer(),
        required=False,
        allow_null=True,
        max_length=MAX_IDENTIFIERS,
        help_text="Who is waiting (found, created or merged by identity resolution); "
        "required without `customer`.",
    )
    sku = serializers.CharField(max_length=64, help_text="SKU (case-insensitive).")
    channel = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        max_length=40,
        help_text="Sales channel code; default: the channel your API client is bound to.",
    )


class SubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.IntegerField(source="customer_id")
    sku = serializers.CharField(source="variant.sku")
    channel = serializers.CharField(source="channel.code", help_text="Sales channel code.")
    source = serializers.CharField(help_text="Who subscribed: `client:<id>`, `store:<code>`, …")
    waiting = serializers.SerializerMethodField(
        help_text="Still waiting (false once a back-in-stock campaign used it)."
    )
    created_at = serializers.DateTimeField()
    notified_at = serializers.DateTimeField(allow_null=True)

    def get_waiting(self, subscription) -> bool:
        return subscription.notified_at is None


# --- Campaigns --------------------------------------------------------------------------------


class CampaignStepOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    delay_minutes = serializers.IntegerField(
        help_text="After enrolment (first step) or after the previous step."
    )
    channels = serializers.ListField(
        child=serializers.CharField(),
        source="channel_codes",
        help_text="Messaging channel codes in order of preference.",
    )
    template = serializers.CharField(source="template.name")


class CampaignOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    trigger = string_output(Trigger.values)
    purpose = string_output(Purpose.values)
    status = string_output(CampaignStatus.values)
    segment = serializers.IntegerField(
        source="segment_id", allow_null=True, help_text="Audience segment id."
    )
    sales_channel = serializers.CharField(
        source="sales_channel.code", allow_null=True, help_text="Sales channel code, or any."
    )
    holdout_percent = serializers.IntegerField()
    attribution_window_hours = serializers.IntegerField()
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    steps = CampaignStepOutputSerializer(many=True, help_text="In order.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


# --- Messages and enrolments ------------------------------------------------------------------


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.IntegerField(source="customer_id")
    campaign = serializers.IntegerField(source="campaign_id")
    campaign_name = serializers.CharField(source="campaign.name")
    step = serializers.IntegerField(source="step.position", help_text="The step's position.")
    channel = serializers.CharField(
        source="channel.code",
        allow_null=True,
        help_text="Messaging channel code (none chosen: null).",
    )
    is_marketing = serializers.BooleanField()
    status = string_output(MessageStatus.values)
    reason = serializers.CharField(
        help_text="Why it was suppressed ("
        + ", ".join(f"`{v}`" for v in SuppressionReason.values)
        + f") or how it failed (e.g. `{UNDELIVERED}`); empty otherwise."
    )
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    clicked_at = serializers.DateTimeField(allow_null=True, help_text="The first click.")
    clicks = serializers.IntegerField()


class EnrolmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.IntegerField(source="customer_id")
    campaign = serializers.IntegerField(source="campaign_id")
    campaign_name = serializers.CharField(source="campaign.name")
    subject_key = serializers.CharField(help_text="What she was enrolled for, e.g. `cart:812`.")
    sales_channel = serializers.CharField(source="sales_channel.code", allow_null=True)
    holdout = serializers.BooleanField(help_text="Kept out of the messages to measure lift.")
    status = string_output(EnrolmentStatus.values)
    exit_reason = serializers.CharField()
    next_position = serializers.IntegerField(help_text="The next step to send.")
    due_at = serializers.DateTimeField(allow_null=True)
    enrolled_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    converted_at = serializers.DateTimeField(allow_null=True)
    converted_order = serializers.CharField(
        source="converted_order.number", allow_null=True, help_text="Order number."
    )
    revenue = serializers.DecimalField(max_digits=14, decimal_places=2)


# --- Receipts ---------------------------------------------------------------------------------


class ReceiptInputSerializer(serializers.Serializer):
    """A delivery receipt (documentation: the service checks the fields)."""

    message_id = serializers.IntegerField(
        required=False,
        help_text="The message id the backend sent (`metadata` and `Idempotency-Key: "
        "omni-message-<id>`); required without `provider_id`.",
    )
    provider_id = serializers.CharField(
        required=False, help_text="The provider's id of the message; required without `message_id`."
    )
    status = string_input(RECEIPT_STATUSES)
    at = RawDateTimeField(required=False, help_text="When it happened; default: now.")
    detail = serializers.CharField(
        required=False, allow_blank=True, help_text="Why it failed (at most 500 characters kept)."
    )


class ReceiptOutputSerializer(serializers.Serializer):
    message = serializers.IntegerField(source="pk")
    status = string_output(MessageStatus.values, "The message's status now.")
    changed = serializers.BooleanField(help_text="False: this receipt was recorded before.")
    delivered_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
