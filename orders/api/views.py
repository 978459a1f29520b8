"""Orders API: carts for web shops and apps, orders from every sales channel (placed, read,
listed, addressed by the channel's own reference, cancelled, prepared, collected, shipped,
returned) and till sales. Views parse input, call one service or selector, and render the
result; every rule and every error comes from the services.

An API client bound to a channel speaks for it only (``orders.api.permissions``).
"""

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import ChannelListing
from customers.selectors import customer_get
from inventory.services.common import resolve_location
from omni.api.authentication import CachedTokenMixin
from omni.api.errors import (
    LIST_ERRORS,
    NOT_FOUND,
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorSerializer,
)
from omni.api.idempotency import IDEMPOTENCY_PARAMETER, IdempotentMixin
from omni.api.permissions import request_actor, request_source
from omni.exceptions import NotFound, ValidationFailed
from omni.models import Channel
from orders import selectors
from orders.api.filters import OrderFilter
from orders.api.permissions import IsPosCaller, caller_channel_id, require_own_channel, scoped
from orders.api.serializers import (
    CartCheckoutInputSerializer,
    CartCreateInputSerializer,
    CartIdentifyInputSerializer,
    CartLineAddInputSerializer,
    CartLineSetInputSerializer,
    CartOutputSerializer,
    OrderCancelInputSerializer,
    OrderCollectInputSerializer,
    OrderCreateInputSerializer,
    OrderDetailOutputSerializer,
    OrderOutputSerializer,
    OrderReturnInputSerializer,
    OrderReturnOutputSerializer,
    OrderShipInputSerializer,
    PosSaleInputSerializer,
)
from orders.models import (
    Cart,
    CartLine,
    Order,
    OrderLine,
)
from orders.services import (
    LineInput,
    ReturnLineInput,
    cart_create,
    cart_identify,
    cart_line_add,
    cart_line_remove,
    cart_line_update,
    order_cancel,
    order_collect,
    order_mark_ready,
    order_place,
    order_place_from_cart,
    order_ship,
    pos_sale_record,
    return_create,
)

NUMBER_REGEX = "[A-Za-z0-9-]{1,20}"
TOKEN_REGEX = "[0-9A-Za-z]{1,64}"
SKU_REGEX = "[^/]+"

NUMBER_PARAMETER = OpenApiParameter(
    "number", str, OpenApiParameter.PATH, description="Order number (`O-7KQ2-M9XD`)."
)
TOKEN_PARAMETER = OpenApiParameter(
    "token", str, OpenApiParameter.PATH, description="The cart's token."
)
SKU_PARAMETER = OpenApiParameter(
    "sku", str, OpenApiParameter.PATH, description="SKU of the line (case-insensitive)."
)

PLACEMENT_ERRORS = {
    **WRITE_ERRORS,
    404: OpenApiResponse(
        ErrorSerializer,
        description="`not_found` or `customer_merged`: the `customer` named is unknown or "
        "was merged into another (`details.survivor`).",
    ),
    409: OpenApiResponse(
        ErrorSerializer,
        description="`insufficient_stock` (`details.lines`: each short line's `index`, "
        "`sku`, `requested`, `available`), `duplicate_order` (the `external_reference` was "
        "placed already: `details.order` is that order's number), `customer_erased`, or an "
        "idempotency conflict.",
    ),
    422: ErrorSerializer,
}
CART_ERRORS = {
    **WRITE_ERRORS,
    **NOT_FOUND,
    409: OpenApiResponse(
        ErrorSerializer,
        description="`cart_closed` (the cart became an order), or an idempotency conflict.",
    ),
    422: ErrorSerializer,
}
TRANSITION_ERRORS = {
    **WRITE_ERRORS,
    **NOT_FOUND,
    409: OpenApiResponse(
        ErrorSerializer,
        description="`invalid_transition` (the order is not in a status that allows this; "
        "nothing changed), or an idempotency conflict.",
    ),
    422: ErrorSerializer,
}


# --- Helpers: what the body names -------------------------------------------------------------


def channel_for(request, code: str | None) -> Channel:
    """The sales channel a body names, or the caller's own when it names none. A bound client
    naming another channel is refused (403); an unknown code is invalid input (400)."""
    if code in (None, ""):
        channel_id = caller_channel_id(request)
        if channel_id is None:
            raise ValidationFailed(
                "Say which sales channel.",
                extra={"channel": ["Required: your API client is bound to no channel."]},
            )
        return Channel.objects.get(pk=channel_id)
    require_own_channel(request, code)
    channel = Channel.objects.filter(code=code).first()
    if channel is None:
        raise ValidationFailed(
            f"No channel with code {code}.", extra={"channel": [f"Unknown channel {code}."]}
        )
    return channel


def customer_for(customer_id: int | None):
    return None if customer_id is None else customer_get(customer_id)


def store_for(code: str | None):
    return None if code in (None, "") else resolve_location(code, "store")


def line_inputs(lines: list[dict]) -> list[LineInput]:
    return [LineInput(line["sku"], line["quantity"], line.get("unit_price")) for line in lines]


def placement_details(data: dict) -> dict:
    """The ``order_place`` arguments of an order's or a checkout's fulfilment part."""
    near = data["ship_to"]
    return {
        "fulfilment_method": data["fulfilment_method"],
        "store": store_for(data["store"]),
        "contact_name": data.get("contact_name") or "",
        "contact_email": data.get("contact_email") or "",
        "contact_phone": data.get("contact_phone") or "",
        "shipping_address": data.get("shipping_address") or "",
        "note": data.get("note") or "",
        "external_reference": data.get("external_reference"),
        "near": (near["latitude"], near["longitude"]) if near else None,
    }


def valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- Reads ------------------------------------------------------------------------------------


def order_summaries() -> QuerySet:
    """Orders with what ``OrderOutputSerializer`` reads, in two queries whatever their number."""
    return Order.objects.select_related("channel", "store", "cart").prefetch_related(
        Prefetch(
            "lines",
            queryset=OrderLine.objects.select_related("transfer").order_by("line_number"),
        )
    )


def return_details() -> QuerySet:
    return selectors.return_detail_queryset()


def order_details() -> QuerySet:
    """Orders with what ``OrderDetailOutputSerializer`` reads."""
    return selectors.order_detail_queryset()


def order_data(request, order: Order, queryset: QuerySet | None = None) -> dict:
    """The order as ``OrderDetailOutputSerializer`` renders it, read afresh (unless it was
    just placed and holds all its page shows: ``selectors.order_detail_in_hand``)."""
    if queryset is None and selectors.order_detail_in_hand(order):
        return OrderDetailOutputSerializer(order, context={"request": request}).data
    fresh = (queryset if queryset is not None else order_details()).get(pk=order.pk)
    return OrderDetailOutputSerializer(fresh, context={"request": request}).data


def cart_details() -> QuerySet:
    """Carts with what ``CartOutputSerializer`` reads (with ``cart_data``)."""
    return Cart.objects.select_related("channel", "order").prefetch_related(
        Prefetch(
            "lines",
            queryset=CartLine.objects.select_related("variant__product").order_by("added_at", "pk"),
        )
    )


def cart_data(cart: Cart, *, fresh: bool = True) -> dict:
    """The cart with its lines, as ``CartOutputSerializer`` renders it (read afresh unless it
    comes from ``cart_details``), the lines titled as the channel lists them."""
    if fresh:
        cart = cart_details().get(pk=cart.pk)
    variant_ids = [line.variant_id for line in cart.lines.all()]
    titles = {}
    if variant_ids:
        titles = dict(
            ChannelListing.objects.filter(channel_id=cart.channel_id, variant_id__in=variant_ids)
            .exclude(title="")
            .values_list("variant_id", "title")
        )
    return CartOutputSerializer(cart, context={"titles": titles}).data


# --- Carts ------------------------------------------------------------------------------------


class CartViewSet(CachedTokenMixin, IdempotentMixin, viewsets.GenericViewSet):
    """Baskets of web shops and apps: anonymous until the shopper says who she is, then on her
    profile; checked out into an order."""

    lookup_field = "token"
    lookup_value_regex = TOKEN_REGEX
    filter_backends = []
    pagination_class = None

    def get_queryset(self):
        return scoped(Cart.objects.select_related("channel"), self.request)

    def _get(self, token, queryset: QuerySet | None = None) -> Cart:
        queryset = Cart.objects.select_related("channel") if queryset is None else queryset
        cart = scoped(queryset, self.request).filter(token=token).first()
        if cart is None:
            raise NotFound(f"No cart {token}.")
        return cart

    @extend_schema(
        summary="Open a cart",
        description="On a sales channel (default: the one your API client is bound to), for a "
        "customer if identifiers are given (found, created or merged by identity resolution), "
        "with its first lines if any, at the channel's prices.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CartCreateInputSerializer,
        responses={
            201: CartOutputSerializer,
            **WRITE_ERRORS,
            404: OpenApiResponse(
                ErrorSerializer, description="`not_found`: the `customer` named is unknown."
            ),
            409: OpenApiResponse(
                ErrorSerializer,
                description="`customer_erased`, or an idempotency conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    def create(self, request, *args, **kwargs):
        data = valid(CartCreateInputSerializer, request)
        channel = channel_for(request, data["channel"])
        cart = cart_create(
            channel=channel,
            source=request_source(request),
            customer=customer_for(data["customer"]),
            identifiers=data.get("identifiers"),
            external_reference=data.get("external_reference") or "",
            lines=line_inputs(data.get("lines") or []),
            actor=request_actor(request),
        )
        return Response(cart_data(cart), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Get a cart by token",
        parameters=[TOKEN_PARAMETER],
        responses={200: CartOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def retrieve(self, request, token=None):
        return Response(cart_data(self._get(token, cart_details()), fresh=False))

    @extend_schema(
        summary="Add units of a SKU to a cart",
        description="A new line, or more units on the line of that SKU. An abandoned cart "
        "opens again.",
        parameters=[TOKEN_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=CartLineAddInputSerializer,
        responses={200: CartOutputSerializer, **CART_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def lines(self, request, token=None):
        cart = self._get(token)
        data = valid(CartLineAddInputSerializer, request)
        cart_line_add(
            cart=cart, sku=data["sku"], quantity=data["quantity"], source=request_source(request)
        )
        return Response(cart_data(cart))

    @extend_schema(
        summary="Set the quantity of a cart line",
        description="0 removes the line. 404 if the SKU is not in the cart.",
        parameters=[TOKEN_PARAMETER, SKU_PARAMETER],
        request=CartLineSetInputSerializer,
        responses={
            200: CartOutputSerializer,
            **WRITE_ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="`cart_closed`."),
        },
    )
    @action(detail=True, methods=["put"], url_path=rf"lines/(?P<sku>{SKU_REGEX})", url_name="line")
    def line(self, request, token=None, sku=None):
        cart = self._get(token)
        data = valid(CartLineSetInputSerializer, request)
        cart_line_update(
            cart=cart, sku=sku, quantity=data["quantity"], source=request_source(request)
        )
        return Response(cart_data(cart))

    @extend_schema(
        summary="Remove a line from a cart",
        parameters=[TOKEN_PARAMETER, SKU_PARAMETER],
        request=None,
        responses={
            200: CartOutputSerializer,
            **WRITE_ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="`cart_closed`."),
        },
    )
    @line.mapping.delete
    def line_remove(self, request, token=None, sku=None):
        cart = self._get(token)
        cart_line_remove(cart=cart, sku=sku, source=request_source(request))
        return Response(cart_data(cart))

    @extend_schema(
        summary="Say who the shopper is",
        description="The cart joins the customer the identifiers name (found, created or "
        "merged by identity resolution), and what was put in it while anonymous reaches her "
        "timeline. A cart of one customer cannot pass to another (409 `cart_owned`).",
        parameters=[TOKEN_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=CartIdentifyInputSerializer,
        responses={
            200: CartOutputSerializer,
            **WRITE_ERRORS,
            404: OpenApiResponse(
                ErrorSerializer,
                description="`not_found`: no such cart, or the `customer` named is unknown.",
            ),
            409: OpenApiResponse(
                ErrorSerializer,
                description="`cart_owned`, `cart_closed`, `customer_erased`, or an idempotency "
                "conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    @action(detail=True, methods=["post"])
    def identify(self, request, token=None):
        cart = self._get(token)
        data = valid(CartIdentifyInputSerializer, request)
        cart_identify(
            cart=cart,
            source=request_source(request),
            identifiers=data.get("identifiers"),
            customer=customer_for(data["customer"]),
            actor=request_actor(request),
        )
        return Response(cart_data(cart))

    @extend_schema(
        summary="Check a cart out: place its order",
        description="The cart's lines at the channel's prices now, for the cart's customer; "
        "every line's stock is held or nothing is placed. The cart is converted. Send an "
        "`Idempotency-Key`: a retry then gets the same order back.",
        parameters=[TOKEN_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=CartCheckoutInputSerializer,
        responses={
            201: OrderDetailOutputSerializer,
            **WRITE_ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(
                ErrorSerializer,
                description="`insufficient_stock` (`details.lines`), `cart_closed`, "
                "`duplicate_order`, or an idempotency conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    @action(detail=True, methods=["post"])
    def checkout(self, request, token=None):
        cart = self._get(token)
        data = valid(CartCheckoutInputSerializer, request)
        order = order_place_from_cart(
            cart=cart,
            source=request_source(request),
            actor=request_actor(request),
            **placement_details(data),
        )
        return Response(order_data(request, order), status=status.HTTP_201_CREATED)


# --- Orders -----------------------------------------------------------------------------------


class OrderViewSet(CachedTokenMixin, IdempotentMixin, viewsets.GenericViewSet):
    """Orders from every sales channel, addressed by number (or by the channel's own
    reference), through their whole life."""

    filterset_class = OrderFilter
    lookup_field = "number"
    lookup_value_regex = NUMBER_REGEX

    def get_queryset(self):
        return scoped(order_summaries(), self.request).order_by("-placed_at", "-pk")

    def _get(self, number, queryset: QuerySet | None = None) -> Order:
        queryset = Order.objects.all() if queryset is None else queryset
        order = selectors.order_by_number(number, scoped(queryset, self.request))
        if order is None:
            raise NotFound(f"No order {number}.")
        return order

    def _render(self, order: Order, status_code=status.HTTP_200_OK) -> Response:
        return Response(order_data(self.request, order), status=status_code)

    @extend_schema(
        summary="List orders",
        description="Newest first, with their lines. A client bound to a channel sees its "
        "channel's orders only.",
        responses={200: OrderOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(OrderOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Place an order",
        description="On a sales channel (default: the one your API client is bound to) at its "
        "prices, with every line's stock held, or nothing. `ship`: served by the channel's "
        "allocation strategy (`ship_to` for the nearest-location strategy); `pickup`: held at "
        "the `store`, the rest brought there by a transfer (status `awaiting_transfer` with "
        "`expected_ready_at`); `in_store`: sold at the `store` at once (`completed`). Send an "
        "`Idempotency-Key`: a retry then gets the same order back.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=OrderCreateInputSerializer,
        responses={201: OrderDetailOutputSerializer, **PLACEMENT_ERRORS},
    )
    def create(self, request, *args, **kwargs):
        data = valid(OrderCreateInputSerializer, request)
        channel = channel_for(request, data["channel"])
        order = order_place(
            channel=channel,
            lines=line_inputs(data["lines"]),
            source=request_source(request),
            customer=customer_for(data["customer"]),
            identifiers=data.get("identifiers"),
            actor=request_actor(request),
            **placement_details(data),
        )
        return self._render(order, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Get an order by number",
        description="With its lines, status history (who and when), fulfilments and returns; "
        "pickups also with their code and the customer's confirmation page.",
        parameters=[NUMBER_PARAMETER],
        responses={200: OrderDetailOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def retrieve(self, request, number=None):
        order = self._get(number, order_details())
        return Response(OrderDetailOutputSerializer(order, context={"request": request}).data)

    @extend_schema(
        summary="Get an order by the channel's own reference",
        description="The order a channel knows by its `external_reference` (a marketplace's "
        "order id, a till's receipt). URL-encode a reference that holds special characters.",
        parameters=[
            OpenApiParameter(
                "channel", str, OpenApiParameter.PATH, description="Sales channel code."
            ),
            OpenApiParameter(
                "external_reference",
                str,
                OpenApiParameter.PATH,
                description="The channel's own id of the order.",
            ),
        ],
        responses={200: OrderDetailOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    @action(
        detail=False,
        methods=["get"],
        url_path=r"by-reference/(?P<channel>[-a-zA-Z0-9_]+)/(?P<external_reference>.+?)",
        url_name="by-reference",
        filter_backends=[],
        pagination_class=None,
    )
    def by_reference(self, request, channel=None, external_reference=None):
        order = (
            scoped(order_details(), request)
            .filter(channel__code=channel, external_reference=external_reference)
            .first()
        )
        if order is None:
            raise NotFound(f"No {channel} order with reference {external_reference}.")
        return Response(OrderDetailOutputSerializer(order, context={"request": request}).data)

    @extend_schema(
        summary="Cancel an order",
        description="An open order (placed, awaiting a transfer or ready): the stock held for "
        "it is released and a transfer still to ship for it is cancelled.",
        parameters=[NUMBER_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=OrderCancelInputSerializer,
        responses={200: OrderDetailOutputSerializer, **TRANSITION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, number=None):
        order = self._get(number)
        data = valid(OrderCancelInputSerializer, request)
        order_cancel(
            order=order,
            reason=data.get("reason") or "",
            source=request_source(request),
            actor=request_actor(request),
        )
        return self._render(order)

    @extend_schema(
        summary="Mark a pickup ready",
        description="The goods are prepared at the store: the customer is told "
        "(`order.pickup_ready` event).",
        parameters=[NUMBER_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=None,
        responses={200: OrderDetailOutputSerializer, **TRANSITION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def ready(self, request, number=None):
        order = self._get(number)
        order_mark_ready(order=order, source=request_source(request), actor=request_actor(request))
        return self._render(order)

    @extend_schema(
        summary="Hand a ready pickup over",
        description="The customer's code must match (400 `wrong_pickup_code`); the stock held "
        "for the order leaves the store as a sale.",
        parameters=[NUMBER_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=OrderCollectInputSerializer,
        responses={200: OrderDetailOutputSerializer, **TRANSITION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def collect(self, request, number=None):
        order = self._get(number)
        data = valid(OrderCollectInputSerializer, request)
        order_collect(
            order=order,
            code=data["code"],
            source=request_source(request),
            actor=request_actor(request),
        )
        return self._render(order)

    @extend_schema(
        summary="Ship an order",
        description="The parcel leaves: the stock held for it is consumed at each location "
        "it was held at (one fulfilment per location).",
        parameters=[NUMBER_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=OrderShipInputSerializer,
        responses={200: OrderDetailOutputSerializer, **TRANSITION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def ship(self, request, number=None):
        order = self._get(number)
        data = valid(OrderShipInputSerializer, request)
        order_ship(
            order=order,
            carrier=data["carrier"],
            tracking_number=data["tracking_number"],
            source=request_source(request),
            actor=request_actor(request),
        )
        return self._render(order)

    @extend_schema(
        summary="An order's returns",
        description="Newest first, with their lines.",
        parameters=[NUMBER_PARAMETER],
        responses={200: OrderReturnOutputSerializer(many=True), **LIST_ERRORS, **NOT_FOUND},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def returns(self, request, number=None):
        order = self._get(number)
        returns = return_details().filter(order=order).order_by("-created_at", "-pk")
        page = self.paginate_queryset(returns)
        return self.get_paginated_response(OrderReturnOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Take goods of an order back",
        description="At any location, whichever channel sold them, once the order was "
        "collected, shipped or completed. Restocked lines go back on that location's shelf. "
        "The refund defaults to the lines' price. Everything back: the order is `returned`.",
        parameters=[NUMBER_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=OrderReturnInputSerializer,
        responses={
            201: OrderReturnOutputSerializer,
            **WRITE_ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(
                ErrorSerializer,
                description="`not_returnable` (the order is open, cancelled or returned), or "
                "an idempotency conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    @returns.mapping.post
    def return_add(self, request, number=None):
        order = self._get(number)
        data = valid(OrderReturnInputSerializer, request)
        record = return_create(
            order=order,
            location=resolve_location(data["location"]),
            lines=[
                ReturnLineInput(line["line"], line["quantity"], line["disposition"])
                for line in data["lines"]
            ],
            refund_amount=data["refund_amount"],
            reason=data.get("reason") or "",
            source=request_source(request),
            actor=request_actor(request),
        )
        return Response(
            OrderReturnOutputSerializer(return_details().get(pk=record.pk)).data,
            status=status.HTTP_201_CREATED,
        )


# --- POS sales --------------------------------------------------------------------------------


class PosSaleView(IdempotentMixin, APIView):
    """A till's sale: an in-store order on a POS channel, the goods gone over the counter."""

    permission_classes = [IsPosCaller]

    @extend_schema(
        summary="Record a till sale",
        description="An order on a store (POS) channel, completed at once: lines at the "
        "channel's price unless the till gives the price it charged, a sale at the store for "
        "each line (accepted even when the ledger says zero), and the purchase on the "
        "customer's timeline when she gave a phone number, email or loyalty card. Only staff "
        "and API clients bound to no channel or to a POS channel may call it. The same "
        "`receipt` again is refused with 409 `duplicate_order`, `details.order` naming the "
        "order recorded first.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=PosSaleInputSerializer,
        responses={201: OrderDetailOutputSerializer, **PLACEMENT_ERRORS},
    )
    def post(self, request):
        data = valid(PosSaleInputSerializer, request)
        code = data["channel"]
        channel = None
        if code not in (None, "") or caller_channel_id(request) is not None:
            channel = channel_for(request, code)
        order = pos_sale_record(
            store=resolve_location(data["store"], "store"),
            lines=line_inputs(data["lines"]),
            channel=channel,
            customer=customer_for(data["customer"]),
            identifiers=data.get("identifiers"),
            receipt=data.get("receipt"),
            source=request_source(request),
            actor=request_actor(request),
        )
        return Response(order_data(request, order), status=status.HTTP_201_CREATED)
