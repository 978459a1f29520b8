"""Input and output serializers of the inventory API. No rules here: services hold them.

Input serializers check the envelope (types, lengths, list sizes); the services check the rules.
Errors of a line are keyed by its index (``{"lines": {"2": {"sku": [...]}}}``) whichever layer
finds them, so clients meet one shape.

Fields with a fixed set of values are documented as strings listing them rather than as OpenAPI
enums: ``kind`` and ``status`` mean different sets on different resources, and enum components
named after them would collide (and rename the channel's ``KindEnum``).
"""

from collections.abc import Mapping

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inventory.models import (
    CountKind,
    CountStatus,
    Location,
    LocationKind,
    ReservationKind,
    ReservationStatus,
    TransferStatus,
)
from inventory.selectors import MAX_BATCH_SKUS
from inventory.services.common import MAX_QUANTITY
from inventory.services.stock import BATCH_KINDS, MAX_BATCH
from omni.api.serializers import one_of, string_output

MAX_COUNT_LINES = 10_000
MAX_TRANSFER_LINES = 1_000
MAX_RESERVATION_LINES = 500
AVAILABILITY_STATES = ("in_stock", "low_stock", "out_of_stock")
CLIENT_RESERVATION_KINDS = (ReservationKind.ORDER_LINE, ReservationKind.CHECKOUT_HOLD)


@extend_schema_field(OpenApiTypes.STR)
class StringChoiceField(serializers.ChoiceField):
    """A choice, documented as a string that lists its values (see the module's docstring)."""

    def __init__(self, choices, **kwargs):
        values = [c[0] if isinstance(c, tuple) else c for c in choices]
        help_text = kwargs.pop("help_text", "")
        kwargs["help_text"] = f"{help_text} {one_of(values)}".strip()
        super().__init__(choices=choices, **kwargs)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time that must state its time zone (a till's clock is local)."""

    default_error_messages = {
        "naive": "Give a time zone (e.g. 2026-11-22T10:00:00+01:00 or ...Z).",
    }

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class IndexedListSerializer(serializers.ListSerializer):
    """A nested list whose item errors are keyed by index, as the services report them."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail
            if isinstance(detail, list):
                raise serializers.ValidationError(
                    {str(index): errors for index, errors in enumerate(detail) if errors}
                ) from None
            if isinstance(detail, Mapping) and set(detail) == {"non_field_errors"}:
                raise serializers.ValidationError(detail["non_field_errors"]) from None
            raise


class ObjectListField(serializers.ListField):
    """A long list checked as an envelope only (a list, its size); the service checks each item
    set-based and reports them by index. The child serializer documents the items."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if not self.allow_empty and not data:
            self.fail("empty")
        return data


# --- Availability -----------------------------------------------------------------------------


class AvailabilityOutputSerializer(serializers.Serializer):
    sku = serializers.CharField()
    channel = serializers.CharField()
    quantity = serializers.IntegerField(help_text="Units the channel may promise.")
    is_low_stock = serializers.BooleanField()
    state = string_output(AVAILABILITY_STATES)
    updated_at = serializers.DateTimeField(
        allow_null=True, help_text="When the figure was computed; null if it never was."
    )


class AvailabilityBatchInputSerializer(serializers.Serializer):
    skus = serializers.ListField(
        child=serializers.CharField(max_length=64),
        min_length=1,
        max_length=MAX_BATCH_SKUS,
        help_text=f"1 to {MAX_BATCH_SKUS} SKUs.",
        error_messages={
            "min_length": "Give at least one SKU.",
            "max_length": f"At most {MAX_BATCH_SKUS} SKUs per request; split the list.",
        },
    )


class AvailabilityBatchOutputSerializer(serializers.Serializer):
    channel = serializers.CharField()
    results = AvailabilityOutputSerializer(
        many=True, help_text="One per known SKU, in the order asked (repeats once)."
    )
    unknown_skus = serializers.ListField(
        child=serializers.CharField(), help_text="SKUs asked for that do not exist (normalised)."
    )


# --- Stock per location -----------------------------------------------------------------------


class StockLocationOutputSerializer(serializers.Serializer):
    location = serializers.CharField(help_text="Location code.")
    location_name = serializers.CharField()
    kind = string_output(LocationKind.values)
    on_hand = serializers.IntegerField(help_text="What the ledger says is there (may be < 0).")
    reserved = serializers.IntegerField()
    safety_stock = serializers.IntegerField()
    available = serializers.IntegerField(help_text="on_hand - reserved - safety_stock, >= 0.")
    in_transit = serializers.IntegerField(help_text="Shipped to this location, not received.")
    updated_at = serializers.DateTimeField(
        allow_null=True, help_text="Null for a location that has only units in transit."
    )


class StockOutputSerializer(serializers.Serializer):
    sku = serializers.CharField()
    locations = StockLocationOutputSerializer(many=True)


# --- Locations --------------------------------------------------------------------------------


class LocationOutputSerializer(serializers.ModelSerializer):
    kind = string_output(LocationKind.values)

    class Meta:
        model = Location
        fields = [
            "code",
            "name",
            "kind",
            "address_line1",
            "address_line2",
            "postal_code",
            "city",
            "country",
            "time_zone",
            "latitude",
            "longitude",
            "ships_online_orders",
            "offers_pickup",
            "safety_stock",
            "is_active",
            "updated_at",
        ]


# --- POS movement batches ---------------------------------------------------------------------


class MovementInputSerializer(serializers.Serializer):
    """One movement of a batch."""

    # Documentation only: ObjectListField leaves each movement to the service's set-based check.

    id = serializers.CharField(max_length=100, help_text="Your id of this movement.")
    sku = serializers.CharField(max_length=64)
    location = serializers.CharField(
        required=False, help_text="Location code; default: the batch's `location`."
    )
    kind = StringChoiceField(
        BATCH_KINDS, help_text="`adjustment` is signed and needs a `reason`; others are > 0."
    )
    quantity = serializers.IntegerField()
    occurred_at = AwareDateTimeField(required=False, help_text="Default: when received.")
    reference = serializers.CharField(max_length=120, required=False)
    reason = serializers.CharField(max_length=200, required=False)


class MovementBatchInputSerializer(serializers.Serializer):
    batch_id = serializers.CharField(max_length=100, help_text="Your id of this batch.")
    location = serializers.CharField(
        max_length=40,
        required=False,
        allow_null=True,
        help_text="Default location code for movements that name none.",
    )
    movements = ObjectListField(
        child=MovementInputSerializer(),
        min_length=1,
        max_length=MAX_BATCH,
        error_messages={
            "min_length": "A batch needs at least one movement.",
            "max_length": f"A batch holds at most {MAX_BATCH:,} movements; split it.",
        },
    )


class MovementBatchResultOutputSerializer(serializers.Serializer):
    batch_id = serializers.CharField()
    movements = serializers.IntegerField(help_text="Movements in the batch.")
    applied = serializers.IntegerField(help_text="Recorded by this batch.")
    duplicates = serializers.IntegerField(help_text="Already recorded by an earlier batch.")
    replayed = serializers.BooleanField(help_text="True: this batch was received before.")
    received_at = serializers.DateTimeField()


class MovementBatchOutputSerializer(serializers.Serializer):
    batch_id = serializers.CharField()
    location = serializers.CharField(allow_null=True, help_text="The batch's default location.")
    movements = serializers.IntegerField()
    applied = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    received_at = serializers.DateTimeField()


# --- Counts -----------------------------------------------------------------------------------


class CountLineInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=0, max_value=MAX_QUANTITY)

    class Meta:
        list_serializer_class = IndexedListSerializer


class StockCountInputSerializer(serializers.Serializer):
    location = serializers.CharField(max_length=40, help_text="Location code.")
    counted_at = AwareDateTimeField(help_text="When the shelf was counted, with its time zone.")
    kind = StringChoiceField(CountKind.choices, default=CountKind.PHYSICAL)
    reference = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    lines = CountLineInputSerializer(many=True, min_length=1, max_length=MAX_COUNT_LINES)


class CountLineOutputSerializer(serializers.Serializer):
    sku = serializers.CharField(source="variant.sku")
    counted_quantity = serializers.IntegerField()
    expected_quantity = serializers.IntegerField(
        allow_null=True, help_text="What the ledger held at the count time, once reconciled."
    )


class StockCountSummaryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    location = serializers.CharField(source="location.code")
    kind = string_output(CountKind.values)
    status = string_output(CountStatus.values)
    reason = serializers.CharField()
    reference = serializers.CharField()
    source = serializers.CharField()
    counted_at = serializers.DateTimeField(allow_null=True)
    requested_at = serializers.DateTimeField(allow_null=True)
    submitted_at = serializers.DateTimeField(allow_null=True)
    reconciled_at = serializers.DateTimeField(allow_null=True)
    line_count = serializers.IntegerField()


class StockCountOutputSerializer(StockCountSummaryOutputSerializer):
    lines = CountLineOutputSerializer(many=True)


# --- Transfers --------------------------------------------------------------------------------


class TransferLineInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)

    class Meta:
        list_serializer_class = IndexedListSerializer


class TransferInputSerializer(serializers.Serializer):
    from_location = serializers.CharField(max_length=40, help_text="Location code.")
    to_location = serializers.CharField(max_length=40, help_text="Location code.")
    lines = TransferLineInputSerializer(many=True, min_length=1, max_length=MAX_TRANSFER_LINES)
    reference = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    expected_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class TransferQuantitiesInputSerializer(serializers.Serializer):
    quantities = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=MAX_QUANTITY),
        required=False,
        help_text="Units by SKU; SKUs left out count 0. Default: every line in full.",
    )


class TransferLineOutputSerializer(serializers.Serializer):
    sku = serializers.CharField(source="variant.sku")
    quantity = serializers.IntegerField(help_text="Requested.")
    shipped_quantity = serializers.IntegerField()
    received_quantity = serializers.IntegerField()
    in_transit = serializers.IntegerField(help_text="Shipped and not received (while shipped).")


class TransferOutputSerializer(serializers.Serializer):
    number = serializers.CharField()
    status = string_output(TransferStatus.values)
    from_location = serializers.CharField(source="from_location.code")
    to_location = serializers.CharField(source="to_location.code")
    reference = serializers.CharField()
    note = serializers.CharField()
    expected_at = serializers.DateTimeField(allow_null=True)
    requested_at = serializers.DateTimeField()
    shipped_at = serializers.DateTimeField(allow_null=True)
    received_at = serializers.DateTimeField(allow_null=True)
    in_transit = serializers.SerializerMethodField(help_text="Units of all lines in transit.")
    lines = TransferLineOutputSerializer(many=True)

    def get_in_transit(self, transfer) -> int:
        return sum(line.in_transit for line in transfer.lines.all())


# --- Reservations -----------------------------------------------------------------------------


class ReservationLineInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)
    location = serializers.CharField(
        max_length=40,
        required=False,
        allow_null=True,
        default=None,
        help_text="Hold at this location only (pickup there); default: where the channel's "
        "rules say.",
    )
    line_reference = serializers.CharField(
        max_length=120, required=False, allow_blank=True, default=""
    )

    class Meta:
        list_serializer_class = IndexedListSerializer


class CoordinatesInputSerializer(serializers.Serializer):
    latitude = serializers.FloatField(min_value=-90, max_value=90)
    longitude = serializers.FloatField(min_value=-180, max_value=180)


class ReservationInputSerializer(serializers.Serializer):
    channel = serializers.CharField(max_length=40, help_text="Sales channel code.")
    reference = serializers.CharField(
        max_length=120,
        help_text="Your order or checkout id.",
    )
    kind = StringChoiceField(CLIENT_RESERVATION_KINDS, default=ReservationKind.ORDER_LINE)
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Checkout holds: default now + the channel's hold time.",
    )
    near = CoordinatesInputSerializer(
        required=False,
        allow_null=True,
        default=None,
        help_text="The customer's position, for channels that serve from the nearest location.",
    )
    lines = ReservationLineInputSerializer(
        many=True, min_length=1, max_length=MAX_RESERVATION_LINES
    )


class ReservationReferenceInputSerializer(serializers.Serializer):
    reference = serializers.CharField(max_length=120)
    line_reference = serializers.CharField(
        max_length=120,
        required=False,
        allow_null=True,
        default=None,
        help_text="Only this line of the reference; default: every line.",
    )


class ReservationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    line_reference = serializers.CharField()
    kind = string_output(ReservationKind.values)
    status = string_output(ReservationStatus.values)
    sku = serializers.CharField(source="variant.sku")
    location = serializers.CharField(source="location.code")
    channel = serializers.CharField(source="channel.code", allow_null=True)
    quantity = serializers.IntegerField()
    pinned = serializers.BooleanField(help_text="Held at this location on purpose (pickup).")
    expires_at = serializers.DateTimeField(allow_null=True)
    needs_attention = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)


class ReservationCreateOutputSerializer(serializers.Serializer):
    reference = serializers.CharField()
    reservations = ReservationOutputSerializer(
        many=True, help_text="A line may be split over locations."
    )


class ReservationReleaseOutputSerializer(serializers.Serializer):
    reference = serializers.CharField()
    line_reference = serializers.CharField(allow_null=True)
    released = serializers.IntegerField(help_text="Units given back (0 if nothing was held).")


class ReservationConsumeOutputSerializer(serializers.Serializer):
    reference = serializers.CharField()
    line_reference = serializers.CharField(allow_null=True)
    consumed = serializers.IntegerField(help_text="Units that left the shelf (sold).")
