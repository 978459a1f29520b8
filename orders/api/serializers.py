"""Input and output serializers of the orders API. No rules here: services hold them.

Input serializers check the envelope (types, list sizes, quantities); the services check the
rules (channels, listings, stock, fulfilment methods, texts, transitions). Errors of a line are
keyed by its index (``{"lines": {"2": {"sku": [...]}}}``) whichever layer finds them, so
clients meet one shape. Some input serializers exist only to document what the view passes on
untouched (identifiers, checked by the customers' identity rules).

Fields with a fixed set of values are documented as strings listing them rather than as OpenAPI
enums: ``kind`` and ``status`` mean different sets on different resources, and enum components
named after them would collide.
"""

from collections.abc import Mapping
from decimal import Decimal

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from customers.identifiers import KINDS as IDENTITY_KINDS
from inventory.services.common import MAX_QUANTITY
from omni.api.serializers import string_input, string_output
from orders.models import (
    CartStatus,
    FulfilmentMethod,
    OrderStatus,
    ReturnDisposition,
)
from orders.services.common import MAX_LINES

MAX_IDENTIFIERS = 50
MAX_ID = 2**63 - 1  # ids are bigints
# Amounts computed for the output, documented as DRF documents its decimal fields: strings.
MONEY_SCHEMA = {"type": "string", "format": "decimal", "pattern": r"^-?\d{0,12}(?:\.\d{0,2})?$"}


def text_input(help_text: str = "", **kwargs) -> serializers.CharField:
    """Free text the service trims and checks (its length limits are the service's)."""
    kwargs.setdefault("required", False)
    return serializers.CharField(
        allow_blank=True, allow_null=True, trim_whitespace=False, help_text=help_text, **kwargs
    )


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
    """A list checked as an envelope only (a list, its size); the view hands the items to the
    rule that checks them and reports them by index. The child serializer documents them."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        if not self.allow_empty and not data:
            self.fail("empty")
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


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class OrderLineRefField(serializers.CharField):
    """An order line named by its number (``1``, ``"2"``) or its SKU."""


# --- Shared input parts -----------------------------------------------------------------------


class OrderIdentifierInputSerializer(serializers.Serializer):
    """An identifier as the channel knows the customer (documentation: the customers' identity
    rules normalise and check it)."""

    kind = string_input(IDENTITY_KINDS)
    value = serializers.CharField(
        help_text="As the channel has it: emails in any case, phone numbers in any format, "
        "loyalty cards with or without spaces."
    )
    network = serializers.CharField(
        required=False, help_text="Social handles: the network (e.g. `instagram`)."
    )
    verified = serializers.BooleanField(
        required=False, default=False, help_text="The channel checked it (a confirmed email)."
    )


def identifiers_field(help_text: str) -> ObjectListField:
    return ObjectListField(
        child=OrderIdentifierInputSerializer(),
        required=False,
        allow_null=True,
        max_length=MAX_IDENTIFIERS,
        help_text=help_text,
    )


class OrderCoordinatesInputSerializer(serializers.Serializer):
    latitude = serializers.FloatField(min_value=-90, max_value=90)
    longitude = serializers.FloatField(min_value=-180, max_value=180)


class OrderLineInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64, help_text="SKU (case-insensitive).")
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)

    class Meta:
        list_serializer_class = IndexedListSerializer


def lines_field(child, help_text: str = "", **kwargs):
    return child(
        many=True,
        min_length=1,
        max_length=MAX_LINES,
        help_text=f"1 to {MAX_LINES} lines. {help_text}".strip(),
        error_messages={
            "min_length": "Give at least one line.",
            "max_length": f"At most {MAX_LINES} lines.",
        },
        **kwargs,
    )


class OrderFulfilmentInputSerializer(serializers.Serializer):
    """How an order is fulfilled and whom to contact (an order's or a checkout's)."""

    fulfilment_method = string_input(
        FulfilmentMethod.values,
        "`ship` needs a `shipping_address`; `pickup` and `in_store` a `store`.",
    )
    store = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Location code of the store the customer collects in (pickup) or buys at "
        "(in store).",
    )
    contact_name = text_input("At most 200 characters.")
    contact_email = text_input("At most 254 characters.")
    contact_phone = text_input("At most 32 characters.")
    shipping_address = text_input("At most 1,000 characters; required to ship.")
    note = text_input("At most 500 characters.")
    external_reference = text_input(
        "Your id of this order, unique per channel (at most 120 characters): placing it again "
        "is refused with 409 `duplicate_order`, and the order can be read at "
        "`by-reference/{channel}/{external_reference}/`."
    )
    ship_to = OrderCoordinatesInputSerializer(
        required=False,
        allow_null=True,
        default=None,
        help_text="Where the parcel goes, for channels that ship from the nearest location.",
    )


# --- Carts ------------------------------------------------------------------------------------


class CartCreateInputSerializer(serializers.Serializer):
    channel = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Sales channel code; default: the channel your API client is bound to.",
    )
    identifiers = identifiers_field("Who the shopper is, if known; default: anonymous.")
    customer = CustomerIdField(help_text="A customer id you kept, instead of identifiers.")
    lines = OrderLineInputSerializer(many=True, required=False, max_length=MAX_LINES)
    external_reference = text_input("Your id of this cart (at most 120 characters).")


class CartLineAddInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64, help_text="SKU (case-insensitive).")
    quantity = serializers.IntegerField(
        min_value=1, max_value=MAX_QUANTITY, default=1, help_text="Units to add; default 1."
    )


class CartLineSetInputSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(
        min_value=0, max_value=MAX_QUANTITY, help_text="The line's new quantity; 0 removes it."
    )


class CartIdentifyInputSerializer(serializers.Serializer):
    identifiers = identifiers_field("Who the shopper is; required without `customer`.")
    customer = CustomerIdField(help_text="A customer id you kept; required without identifiers.")


class CartCheckoutInputSerializer(OrderFulfilmentInputSerializer):
    """The cart's lines become the order's, at the channel's prices now; the cart's customer
    (identify the cart first) becomes the order's."""


class CartLineOutputSerializer(serializers.Serializer):
    sku = serializers.CharField(source="variant.sku")
    title = serializers.SerializerMethodField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        help_text="The channel's price when the line last changed (checkout prices it again).",
    )
    line_total = serializers.SerializerMethodField()
    added_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_title(self, line) -> str:
        titles = self.context.get("titles", {})
        variant = line.variant
        title = titles.get(variant.pk) or variant.product.title
        return f"{title} ({variant.options_label})" if variant.option_values else title

    @extend_schema_field(MONEY_SCHEMA)
    def get_line_total(self, line) -> str:
        return f"{line.unit_price * line.quantity:.2f}"


class CartOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The cart's id: keep it to change the cart.")
    channel = serializers.CharField(source="channel.code")
    customer = serializers.IntegerField(
        source="customer_id", allow_null=True, help_text="Null until the shopper is identified."
    )
    status = string_output(CartStatus.values)
    currency = serializers.CharField()
    external_reference = serializers.CharField()
    lines = CartLineOutputSerializer(many=True)
    item_count = serializers.SerializerMethodField(help_text="Units of every line.")
    total = serializers.SerializerMethodField(help_text="Sum of the line totals.")
    order = serializers.SerializerMethodField(help_text="The order it became, once converted.")
    created_at = serializers.DateTimeField()
    last_activity_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)

    def get_item_count(self, cart) -> int:
        return sum(line.quantity for line in cart.lines.all())

    @extend_schema_field(MONEY_SCHEMA)
    def get_total(self, cart) -> str:
        total = sum((line.unit_price * line.quantity for line in cart.lines.all()), Decimal(0))
        return f"{total:.2f}"

    @extend_schema_field({"type": "string", "nullable": True})
    def get_order(self, cart) -> str | None:
        order = getattr(cart, "order", None)
        return order.number if order is not None else None


# --- Orders -----------------------------------------------------------------------------------


class OrderCreateInputSerializer(OrderFulfilmentInputSerializer):
    channel = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Sales channel code; default: the channel your API client is bound to.",
    )
    lines = lines_field(OrderLineInputSerializer, "A SKU given twice is one line.")
    identifiers = identifiers_field(
        "Who the customer is (found, created or merged by identity resolution); optional."
    )
    customer = CustomerIdField(help_text="A customer id you kept, instead of or with identifiers.")


class OrderCancelInputSerializer(serializers.Serializer):
    reason = text_input("Why (at most 300 characters); kept in the status history.")


class OrderCollectInputSerializer(serializers.Serializer):
    code = serializers.CharField(
        max_length=40, help_text="The pickup code the customer shows (6 digits)."
    )


class OrderShipInputSerializer(serializers.Serializer):
    carrier = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=60, help_text="Carrier name."
    )
    tracking_number = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=100
    )


class OrderLineOutputSerializer(serializers.Serializer):
    line = serializers.IntegerField(source="line_number", help_text="1, 2, ...")
    sku = serializers.CharField()
    title = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    line_total = serializers.DecimalField(max_digits=14, decimal_places=2)
    returned_quantity = serializers.IntegerField()
    transfer = serializers.CharField(
        source="transfer.number",
        allow_null=True,
        help_text="The transfer bringing units of this line to the pickup store, if any.",
    )
    transfer_quantity = serializers.IntegerField(help_text="Units coming by that transfer.")


class OrderStatusChangeOutputSerializer(serializers.Serializer):
    from_status = serializers.SerializerMethodField(help_text="Null for the first entry.")
    to_status = string_output(OrderStatus.values)
    at = serializers.DateTimeField()
    source = serializers.CharField(
        help_text="Who: `client:<id>` (an API client), `user:<id>` (staff), or Omni itself "
        "(`transfers`, ...)."
    )
    actor = serializers.CharField(
        source="actor.username", allow_null=True, help_text="Staff username, if staff acted."
    )
    note = serializers.CharField()

    @extend_schema_field({"type": "string", "nullable": True})
    def get_from_status(self, change) -> str | None:
        return change.from_status or None


class OrderFulfilmentOutputSerializer(serializers.Serializer):
    method = string_output(FulfilmentMethod.values)
    location = serializers.CharField(source="location.code", help_text="Where the goods left.")
    units = serializers.IntegerField()
    carrier = serializers.CharField()
    tracking_number = serializers.CharField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor.username", allow_null=True)


class OrderReturnLineOutputSerializer(serializers.Serializer):
    line = serializers.IntegerField(source="order_line.line_number")
    sku = serializers.CharField(source="order_line.sku")
    quantity = serializers.IntegerField()
    disposition = string_output(ReturnDisposition.values)


class OrderReturnOutputSerializer(serializers.Serializer):
    number = serializers.CharField()
    order = serializers.CharField(source="order.number")
    location = serializers.CharField(source="location.code", help_text="Where it came back.")
    reason = serializers.CharField()
    refund_amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    created_at = serializers.DateTimeField()
    source = serializers.CharField()
    actor = serializers.CharField(source="actor.username", allow_null=True)
    lines = OrderReturnLineOutputSerializer(many=True)


class OrderOutputSerializer(serializers.Serializer):
    number = serializers.CharField()
    channel = serializers.CharField(source="channel.code")
    customer = serializers.IntegerField(source="customer_id", allow_null=True)
    cart = serializers.CharField(
        source="cart.token", allow_null=True, help_text="The cart it came from, if any."
    )
    external_reference = serializers.CharField(
        allow_null=True, help_text="The channel's own id (marketplace order, POS receipt)."
    )
    status = string_output(OrderStatus.values)
    fulfilment_method = string_output(FulfilmentMethod.values)
    store = serializers.CharField(
        source="store.code", allow_null=True, help_text="Pickup or in-store location code."
    )
    currency = serializers.CharField()
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=2)
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    refunded_total = serializers.DecimalField(max_digits=14, decimal_places=2)
    contact_name = serializers.CharField()
    contact_email = serializers.CharField()
    contact_phone = serializers.CharField()
    shipping_address = serializers.CharField()
    note = serializers.CharField()
    placed_at = serializers.DateTimeField()
    expected_ready_at = serializers.DateTimeField(
        allow_null=True, help_text="When a pickup waiting for a transfer should be ready."
    )
    ready_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    needs_attention = serializers.BooleanField()
    attention_reason = serializers.CharField()
    source = serializers.CharField(help_text="Who placed it: `client:<id>` or `user:<id>`.")
    updated_at = serializers.DateTimeField()
    lines = OrderLineOutputSerializer(many=True)


class OrderDetailOutputSerializer(OrderOutputSerializer):
    pickup_code = serializers.SerializerMethodField(
        help_text="Pickups: the code the customer gives at the counter; null otherwise."
    )
    confirmation_url = serializers.SerializerMethodField(
        help_text="Pickups: the customer's confirmation page with the code and its QR code; "
        "null otherwise."
    )
    history = OrderStatusChangeOutputSerializer(many=True, help_text="Oldest first.")
    fulfilments = OrderFulfilmentOutputSerializer(many=True)
    returns = OrderReturnOutputSerializer(many=True, help_text="Newest first.")

    def _pickup(self, order) -> bool:
        return order.fulfilment_method == FulfilmentMethod.PICKUP

    @extend_schema_field({"type": "string", "nullable": True})
    def get_pickup_code(self, order) -> str | None:
        return order.pickup_code if self._pickup(order) else None

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_confirmation_url(self, order) -> str | None:
        if not self._pickup(order):
            return None
        page = reverse("order-confirmation", kwargs={"token": order.public_token})
        return self.context["request"].build_absolute_uri(page)


# --- Returns ----------------------------------------------------------------------------------


class OrderReturnLineInputSerializer(serializers.Serializer):
    line = OrderLineRefField(help_text="The order line: its number (1, 2, ...) or its SKU.")
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)
    disposition = string_input(
        ReturnDisposition.values,
        "`restock` puts the units back on the location's shelf.",
        required=False,
        default=ReturnDisposition.RESTOCK,
    )

    class Meta:
        list_serializer_class = IndexedListSerializer


class OrderReturnInputSerializer(serializers.Serializer):
    location = serializers.CharField(help_text="Code of the location taking the goods back.")
    lines = lines_field(OrderReturnLineInputSerializer)
    refund_amount = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        required=False,
        allow_null=True,
        default=None,
        help_text="Default: the lines' price; at most that and what is left of the total.",
    )
    reason = text_input("At most 200 characters.")


# --- POS sales --------------------------------------------------------------------------------


class PosSaleLineInputSerializer(OrderLineInputSerializer):
    unit_price = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        required=False,
        allow_null=True,
        default=None,
        help_text="The price the till charged; default: the channel's price.",
    )

    class Meta:
        list_serializer_class = IndexedListSerializer


class PosSaleInputSerializer(serializers.Serializer):
    store = serializers.CharField(help_text="Location code of the store where the till is.")
    channel = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="A store (POS) channel code; default: your client's channel, else the first "
        "active POS channel.",
    )
    lines = lines_field(PosSaleLineInputSerializer)
    identifiers = identifiers_field(
        "The customer, if she gave a phone number, an email or a loyalty card."
    )
    customer = CustomerIdField(help_text="A customer id you kept, instead of identifiers.")
    receipt = text_input(
        "The till's receipt id (at most 120 characters): the same receipt again is refused "
        "with 409 `duplicate_order` naming the order recorded first."
    )
