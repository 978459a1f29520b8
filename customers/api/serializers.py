"""Input and output serializers of the customers API. No rules here: services hold them.

Input serializers check the envelope (types, list sizes). Profile fields, identifiers and
touchpoint events go to the services as sent, which check them and report every error by field
(and by index for lists), so clients meet one shape whichever layer refuses. Some input
serializers exist only to document a body the view passes on untouched (say so in their
docstring).

Fields with a fixed set of values are documented as strings listing them rather than as OpenAPI
enums: ``kind`` and ``status`` mean different sets on different resources, and enum components
named after them would collide.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from customers.identifiers import KINDS as IDENTITY_KINDS
from customers.models import (
    AgeRange,
    ConsentStatus,
    ConversationStatus,
    Gender,
    MessageDirection,
    PreferenceSource,
    SegmentMatch,
    TouchpointKind,
)
from customers.segments import rule_description
from customers.services import MAX_MERGE
from customers.services.touchpoints import MAX_EVENTS
from omni.api.serializers import one_of, string_input, string_output

MAX_IDENTIFIERS = 50
MAX_ID = 2**63 - 1  # ids are bigints


@extend_schema_field(OpenApiTypes.DATETIME)
class RawDateTimeField(serializers.CharField):
    """An ISO 8601 date-time with its zone, passed to the service as sent (it checks it and
    refuses times in the future)."""


class ObjectListField(serializers.ListField):
    """A list checked as an envelope only (a list, its size); the service checks each item and
    reports them by index. The child serializer documents the items."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if not self.allow_empty and not data:
            self.fail("empty")
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return data


class CustomerIdField(serializers.IntegerField):
    """A customer id an integrator kept: a JSON whole number of a bigint's range. A string of
    digits (``"12"``) and a boolean are refused, so every body that names a customer takes the
    same ids."""

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
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


# --- Identifiers and profiles -----------------------------------------------------------------


class CustomerIdentifierInputSerializer(serializers.Serializer):
    """An identifier as a channel knows the customer (documentation: the service normalises
    and checks it)."""

    kind = string_input(IDENTITY_KINDS)
    value = serializers.CharField(
        help_text="As the channel has it: emails in any case, phone numbers in any format "
        "(without a country code: the shop's country), loyalty cards with or without spaces."
    )
    network = serializers.CharField(
        required=False,
        help_text="Social handles: the network (e.g. `instagram`), unless the value is "
        "`network:handle`.",
    )
    verified = serializers.BooleanField(
        required=False, default=False, help_text="The channel checked it (a confirmed email)."
    )


def _profile_field(help_text: str = "") -> serializers.CharField:
    return serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text=help_text
    )


class CustomerProfileInputSerializer(serializers.Serializer):
    """Profile fields (documentation: the service checks them; fields left out keep their value,
    an unknown field refuses the change)."""

    first_name = _profile_field()
    last_name = _profile_field()
    age_range = _profile_field(one_of(AgeRange.values))
    gender = _profile_field(one_of(Gender.values))
    city = _profile_field()
    occupation = _profile_field()
    language = _profile_field("For messages, e.g. `en`, `fr`, `pt-BR`.")
    time_zone = _profile_field("For quiet hours, e.g. `Europe/Paris`.")
    home_store = _profile_field("Location code of a store.")
    preferred_channel = _profile_field("Messaging channel code; null: inferred from use again.")


class CustomerCreateInputSerializer(CustomerProfileInputSerializer):
    identifiers = ObjectListField(
        child=CustomerIdentifierInputSerializer(),
        min_length=1,
        max_length=MAX_IDENTIFIERS,
        help_text="At least one; none may belong to another customer yet.",
    )


class CustomerResolveInputSerializer(CustomerProfileInputSerializer):
    identifiers = ObjectListField(
        child=CustomerIdentifierInputSerializer(),
        required=False,
        max_length=MAX_IDENTIFIERS,
        help_text="What the channel knows the customer by. Required without `customer`.",
    )
    customer = CustomerIdField(
        help_text="A customer id you kept (a merged id leads to the customer it joined); "
        "required without `identifiers`."
    )


class CustomerIdentityOutputSerializer(serializers.Serializer):
    kind = string_output(IDENTITY_KINDS)
    value = serializers.CharField(help_text="Normalised.")
    verified = serializers.BooleanField()
    source = serializers.CharField(help_text="Who sent it first.")
    first_seen_at = serializers.DateTimeField()


class CustomerOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    age_range = string_output(AgeRange.values, "Empty if unknown.")
    gender = string_output(Gender.values, "Empty if unknown.")
    city = serializers.CharField()
    occupation = serializers.CharField()
    language = serializers.CharField()
    time_zone = serializers.CharField()
    home_store = serializers.CharField(
        source="home_store.code", allow_null=True, help_text="Location code."
    )
    preferred_channel = serializers.CharField(
        source="preferred_channel.code", allow_null=True, help_text="Messaging channel code."
    )
    preferred_channel_source = string_output(PreferenceSource.values)
    identities = CustomerIdentityOutputSerializer(many=True)
    first_seen_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    last_purchase_at = serializers.DateTimeField(allow_null=True)
    lifetime_orders = serializers.IntegerField()
    lifetime_revenue = serializers.DecimalField(max_digits=14, decimal_places=2)
    erased = serializers.SerializerMethodField(help_text="Her personal data was erased.")
    erased_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_erased(self, customer) -> bool:
        return customer.erased_at is not None


class CustomerConsentStateOutputSerializer(serializers.Serializer):
    channel = serializers.CharField(source="channel.code", help_text="Messaging channel code.")
    status = string_output(ConsentStatus.values)
    occurred_at = serializers.DateTimeField(help_text="When the customer said so.")


class CustomerChannelStatOutputSerializer(serializers.Serializer):
    channel = serializers.CharField(source="channel.code")
    touchpoints = serializers.IntegerField()
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()


class CustomerDetailOutputSerializer(CustomerOutputSerializer):
    consents = CustomerConsentStateOutputSerializer(
        many=True, source="consent_states", help_text="The current answer per channel."
    )
    channels = CustomerChannelStatOutputSerializer(
        many=True, source="channel_stats", help_text="Channels used, by code."
    )


class CustomerResolveOutputSerializer(serializers.Serializer):
    customer = CustomerDetailOutputSerializer()
    created = serializers.BooleanField(help_text="No identifier was known: a new customer.")
    merged = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Ids of customers found to be the same person, merged into this one.",
    )
    attached = serializers.IntegerField(help_text="Identifiers newly attached to the customer.")


# --- Timeline ---------------------------------------------------------------------------------


class TimelineEventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = string_output(TouchpointKind.values)
    channel = serializers.CharField(help_text="Channel code.")
    location = serializers.CharField(allow_null=True, help_text="Location code.")
    occurred_at = serializers.DateTimeField()
    properties = serializers.DictField()
    source = serializers.CharField(help_text="Who sent it: `client:<id>`, `user:<id>`, `omni:…`.")
    event_id = serializers.CharField(help_text="The sender's id of the event.")


class TimelinePageOutputSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page, or null.")
    previous = serializers.URLField(
        allow_null=True, help_text="The previous (newer) page, or null on the first page."
    )
    results = TimelineEventOutputSerializer(many=True)


class TouchpointEventInputSerializer(serializers.Serializer):
    """One event of a batch (documentation only: the service checks the events set-based)."""

    event_id = serializers.CharField(
        max_length=100, help_text="Your id of this event; unique per sender (a replay is skipped)."
    )
    kind = string_input(TouchpointKind.values)
    channel = serializers.CharField(help_text="Code of an active channel.")
    occurred_at = RawDateTimeField(required=False, help_text="With its zone; default: now.")
    identifiers = CustomerIdentifierInputSerializer(
        many=True, required=False, help_text="Required without `customer`."
    )
    customer = serializers.IntegerField(required=False, help_text="A customer id you kept.")
    location = serializers.CharField(required=False, help_text="Location code.")
    properties = serializers.DictField(
        required=False,
        help_text="Anything about the event; `amount` (a number ≥ 0) on a purchase adds to "
        "the lifetime revenue.",
    )


class TouchpointBatchInputSerializer(serializers.Serializer):
    """A batch of touchpoints (documentation only: the view passes the events to the service
    as sent)."""

    events = ObjectListField(
        child=TouchpointEventInputSerializer(),
        min_length=1,
        max_length=MAX_EVENTS,
        help_text=f"1 to {MAX_EVENTS:,} events.",
    )


class TouchpointBatchOutputSerializer(serializers.Serializer):
    received = serializers.IntegerField(help_text="Events in the batch.")
    created = serializers.IntegerField(help_text="Recorded by this batch.")
    duplicates = serializers.IntegerField(help_text="Recorded before (same sender and event_id).")
    new_customers = serializers.IntegerField()
    merges = serializers.IntegerField(help_text="Customers found to be one person and merged.")
    customers = serializers.ListField(
        child=serializers.IntegerField(allow_null=True),
        help_text="Per event, in order: its customer id (null for a duplicate).",
    )


# --- Consents ---------------------------------------------------------------------------------


class CustomerConsentInputSerializer(serializers.Serializer):
    channel = serializers.CharField(max_length=40, help_text="Messaging channel code.")
    status = string_input(ConsentStatus.values)
    source = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="Where the customer said so (web form, store, ...); default: your client.",
    )
    occurred_at = RawDateTimeField(
        required=False, allow_null=True, help_text="When the customer said so; default: now."
    )
    proof = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Form text, IP address, signature reference.",
    )


class CustomerConsentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField(source="channel.code")
    status = string_output(ConsentStatus.values)
    source = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    proof = serializers.CharField()
    recorded_at = serializers.DateTimeField()


class CustomerConsentsOutputSerializer(serializers.Serializer):
    customer = serializers.IntegerField()
    current = CustomerConsentStateOutputSerializer(many=True, help_text="Per channel, by code.")
    history = CustomerConsentOutputSerializer(many=True, help_text="Newest first.")


# --- Conversations ----------------------------------------------------------------------------


class ConversationMessageInputSerializer(serializers.Serializer):
    identifiers = ObjectListField(
        child=CustomerIdentifierInputSerializer(),
        required=False,
        max_length=MAX_IDENTIFIERS,
        help_text="Who wrote (or is written to); required without `customer`.",
    )
    customer = CustomerIdField(
        help_text="A customer id you kept (a merged id leads to the customer it joined); "
        "required without `identifiers`."
    )
    channel = serializers.CharField(max_length=40, help_text="Channel code.")
    body = serializers.CharField(trim_whitespace=False, allow_blank=True)
    external_id = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Your id of the message: sending it again adds nothing.",
    )
    sent_at = RawDateTimeField(required=False, allow_null=True, help_text="Default: now.")
    subject = serializers.CharField(required=False, allow_blank=True, default="")
    conversation = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_ID,
        help_text="Add to this conversation; default: the customer's open one (or a new one).",
    )
    direction = string_input(
        MessageDirection.values, required=False, default=MessageDirection.INBOUND
    )


class ConversationStatusInputSerializer(serializers.Serializer):
    status = string_input(ConversationStatus.values, required=False, allow_null=True)
    assignee = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Username of a staff member; null: nobody. Left out: unchanged.",
    )


class ConversationMessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField(source="channel.code")
    direction = string_output(MessageDirection.values)
    body = serializers.CharField()
    author = serializers.CharField(
        source="author.username", allow_null=True, help_text="Staff username, for replies."
    )
    source = serializers.CharField()
    external_id = serializers.CharField()
    sent_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class ConversationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.IntegerField(source="customer_id")
    subject = serializers.CharField()
    status = string_output(ConversationStatus.values)
    assignee = serializers.CharField(
        source="assignee.username", allow_null=True, help_text="Staff username."
    )
    started_on = serializers.CharField(source="started_on.code", help_text="Channel code.")
    created_at = serializers.DateTimeField()
    last_message_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)


class ConversationDetailOutputSerializer(ConversationOutputSerializer):
    messages = ConversationMessageOutputSerializer(many=True, help_text="Oldest first.")


class ConversationMessageResultOutputSerializer(serializers.Serializer):
    created = serializers.BooleanField(help_text="False: this external_id was sent before.")
    customer = serializers.IntegerField()
    conversation = ConversationOutputSerializer()
    message = ConversationMessageOutputSerializer()


# --- Segments ---------------------------------------------------------------------------------


class SegmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    match = string_output(SegmentMatch.values, "Customers matching all rules or any of them.")
    rules = serializers.SerializerMethodField(help_text="Each rule, described (`used web`).")
    member_count = serializers.IntegerField(
        allow_null=True, help_text="At the last count; null if never counted."
    )
    counted_at = serializers.DateTimeField(allow_null=True)

    def get_rules(self, segment) -> list[str]:
        return [rule_description(rule) for rule in segment.rules.all()]


# --- Privacy and merges -----------------------------------------------------------------------


class CustomerEraseInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200, help_text="Why (the customer's request, ...).")


class CustomerEraseOutputSerializer(serializers.Serializer):
    customer = serializers.IntegerField()
    erased_at = serializers.DateTimeField()
    removed = serializers.DictField(
        child=serializers.IntegerField(), help_text="Rows removed per model."
    )


class CustomerMergeInputSerializer(serializers.Serializer):
    customers = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        min_length=2,
        max_length=MAX_MERGE,
        help_text="Customer ids; all merge into the oldest.",
    )
    reason = serializers.CharField(max_length=200)


class CustomerMergeOutputSerializer(serializers.Serializer):
    survivor = CustomerDetailOutputSerializer()
    merged = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids merged into the survivor (now 404)."
    )
