"""Inventory API: availability per channel, stock per location, POS movement batches, counts,
transfers, reservations and locations. Views parse input, call one service or selector, and
render the result; every rule and every error comes from the services."""

import hashlib

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import Variant
from catalog.validators import normalize_sku
from inventory import selectors
from inventory.api.filters import (
    LocationFilter,
    ReservationFilter,
    StockCountFilter,
    TransferFilter,
)
from inventory.api.permissions import IsStaffOrApiClientReading
from inventory.api.serializers import (
    AvailabilityBatchInputSerializer,
    AvailabilityBatchOutputSerializer,
    AvailabilityOutputSerializer,
    LocationOutputSerializer,
    MovementBatchInputSerializer,
    MovementBatchOutputSerializer,
    MovementBatchResultOutputSerializer,
    ReservationConsumeOutputSerializer,
    ReservationCreateOutputSerializer,
    ReservationInputSerializer,
    ReservationOutputSerializer,
    ReservationReferenceInputSerializer,
    ReservationReleaseOutputSerializer,
    StockCountInputSerializer,
    StockCountOutputSerializer,
    StockCountSummaryOutputSerializer,
    StockOutputSerializer,
    TransferInputSerializer,
    TransferOutputSerializer,
    TransferQuantitiesInputSerializer,
)
from inventory.models import (
    Location,
    MovementBatch,
    Reservation,
    StockCount,
    StockCountLine,
    Transfer,
    TransferLine,
)
from inventory.services import (
    ReserveLine,
    movement_batch_apply,
    stock_consume,
    stock_count_submit,
    stock_release,
    stock_reserve,
    transfer_cancel,
    transfer_receive,
    transfer_request,
    transfer_ship,
)
from inventory.services.common import resolve_location
from omni.api.authentication import CachedTokenMixin
from omni.api.errors import (
    IDEMPOTENCY_ERRORS,
    LIST_ERRORS,
    NOT_FOUND,
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorSerializer,
)
from omni.api.idempotency import IDEMPOTENCY_PARAMETER, IdempotentMixin
from omni.api.permissions import request_actor, request_client, request_source
from omni.exceptions import NotFound, ValidationFailed
from omni.formats import api_datetime
from omni.models import Channel

SKU_PARAMETER = OpenApiParameter(
    "sku", str, OpenApiParameter.PATH, description="SKU (case-insensitive)."
)
CHANNEL_PARAMETER = OpenApiParameter(
    "channel", str, OpenApiParameter.PATH, description="Sales channel code."
)


# --- Helpers: who calls, and references in the body -------------------------------------------


def caller_channel(request) -> Channel | None:
    client = request_client(request)
    if client is None or client.channel_id is None:
        return None
    return Channel.objects.get(pk=client.channel_id)


def unknown_channel(code: str) -> NotFound:
    return NotFound(
        f"No sales channel with code {code}.",
        extra={"channel": [f"{code} is not a sales channel."]},
    )


def unknown_sku(sku: str) -> NotFound:
    return NotFound(f"No variant with SKU {sku}.", extra={"sku": [f"Unknown SKU {sku}."]})


# --- Availability -----------------------------------------------------------------------------


class AvailabilityView(CachedTokenMixin, APIView):
    """What a sales channel may promise of one SKU: the hottest read of web shops and
    marketplaces. One prepared query; the selector's dict is the wire format, sent without a
    serializer pass."""

    @extend_schema(
        summary="Availability of a SKU on a channel",
        description="Read from precomputed rows, refreshed after every stock change.",
        parameters=[CHANNEL_PARAMETER, SKU_PARAMETER],
        responses={200: AvailabilityOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def get(self, request, channel, sku):
        try:
            data = selectors.availability_for_channel(normalize_sku(sku), channel)
        except selectors.UnknownChannel:
            raise unknown_channel(channel) from None
        if data is None:
            raise unknown_sku(sku)
        return Response(data)  # already in the AvailabilityOutputSerializer wire format


class AvailabilityBatchView(IdempotentMixin, APIView):
    """Availability of many SKUs at once. A POST because the list is long, but a read: every
    API client may call it, read-only ones included."""

    permission_classes = [IsStaffOrApiClientReading]

    @extend_schema(
        summary="Availability of up to 500 SKUs on a channel",
        description="A read sent as a POST (the list is too long for a URL): read-only clients "
        "may call it. Results come in the order asked; SKUs that do not exist are listed in "
        "`unknown_skus`.",
        parameters=[CHANNEL_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=AvailabilityBatchInputSerializer,
        responses={
            200: AvailabilityBatchOutputSerializer,
            **WRITE_ERRORS,
            **NOT_FOUND,
            **IDEMPOTENCY_ERRORS,
        },
    )
    def post(self, request, channel):
        serializer = AvailabilityBatchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        skus = [normalize_sku(sku) for sku in serializer.validated_data["skus"]]
        try:
            results, unknown = selectors.availability_batch(skus, channel)
        except selectors.UnknownChannel:
            raise unknown_channel(channel) from None
        return Response({"channel": channel, "results": results, "unknown_skus": unknown})


# --- Stock per location -----------------------------------------------------------------------


class StockView(CachedTokenMixin, APIView):
    """Where a SKU is: every location's stock of it."""

    @extend_schema(
        summary="Stock of a SKU per location",
        parameters=[SKU_PARAMETER],
        responses={200: StockOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def get(self, request, sku):
        variant = Variant.objects.filter(sku=normalize_sku(sku)).first()
        if variant is None:
            raise unknown_sku(sku)
        locations = selectors.stock_for_variant(variant)
        return Response({"sku": variant.sku, "locations": locations})  # wire format


# --- POS movement batches ---------------------------------------------------------------------


class MovementBatchView(IdempotentMixin, APIView):
    """Batches of stock movements from tills and other integrators, applied exactly once."""

    @extend_schema(
        summary="Send a batch of stock movements",
        description="Up to 10,000 movements, each with your own `id`. The whole batch is applied "
        "or, if any movement is invalid, none of it, with every error by index in "
        "`details.movements` (400 `invalid_batch`). Sending the same `batch_id` again is "
        "harmless: the answer is 200 with the first result and `replayed: true`, and nothing is "
        "written (409 `batch_id_reused` if its movements differ). A movement whose `id` an "
        "earlier batch recorded is skipped and counted in `duplicates`.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=MovementBatchInputSerializer,
        responses={
            201: OpenApiResponse(
                MovementBatchResultOutputSerializer,
                description="Applied. A replay of the batch answers 200 with the same body and "
                "`replayed: true`.",
            ),
            **WRITE_ERRORS,
            **IDEMPOTENCY_ERRORS,
        },
    )
    def post(self, request):
        # The same bytes again is the same batch: hashing them is cheaper than the items.
        # Read before request.data, which would otherwise consume the stream.
        fingerprint = hashlib.sha256(request._request.body).hexdigest()
        serializer = MovementBatchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        location = data.get("location")
        result = movement_batch_apply(
            source=request_source(request),
            batch_id=data["batch_id"],
            movements=data["movements"],
            location=resolve_location(location) if location else None,
            channel=caller_channel(request),
            actor=request_actor(request),
            fingerprint=fingerprint,
        )
        body = {**result.as_dict, "received_at": api_datetime(result.batch.received_at)}
        return Response(
            body, status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED
        )


class MovementBatchDetailView(CachedTokenMixin, APIView):
    """A batch the caller sent (batch ids are per sender)."""

    @extend_schema(
        summary="A batch you sent, by its id",
        responses={200: MovementBatchOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def get(self, request, batch_id):
        batch = (
            MovementBatch.objects.select_related("location")
            .filter(source=request_source(request), batch_id=batch_id)
            .first()
        )
        if batch is None:
            raise NotFound(
                f"You sent no batch {batch_id}.", extra={"batch_id": [f"Unknown batch {batch_id}."]}
            )
        return Response(
            {
                "batch_id": batch.batch_id,
                "location": batch.location.code if batch.location else None,
                "movements": batch.movement_count,
                "applied": batch.applied_count,
                "duplicates": batch.duplicate_count,
                "received_at": api_datetime(batch.received_at),
            }
        )


# --- Locations --------------------------------------------------------------------------------


class LocationViewSet(CachedTokenMixin, viewsets.ReadOnlyModelViewSet):
    """Stores and warehouses (staff manage them in the admin)."""

    queryset = Location.objects.order_by("code")
    serializer_class = LocationOutputSerializer
    filterset_class = LocationFilter
    lookup_field = "code"
    lookup_value_regex = "[^/]+"

    def get_object(self):
        code = self.kwargs["code"]
        location = Location.objects.filter(code=code).first()
        if location is None:
            raise NotFound(f"No location with code {code}.")
        return location

    @extend_schema(
        summary="List locations",
        responses={200: LocationOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Get a location by code",
        responses={200: LocationOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)


# --- Counts -----------------------------------------------------------------------------------


class StockCountViewSet(CachedTokenMixin, IdempotentMixin, viewsets.GenericViewSet):
    """Physical counts and POS snapshots; reconciliation compares them with the ledger."""

    filterset_class = StockCountFilter
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return StockCount.objects.select_related("location").order_by("-pk")

    def _detail(self, pk) -> StockCount:
        count = (
            self.get_queryset()
            .prefetch_related(
                Prefetch(
                    "lines",
                    queryset=StockCountLine.objects.select_related("variant").order_by(
                        "variant__sku"
                    ),
                )
            )
            .filter(pk=pk)
            .first()
        )
        if count is None:
            raise NotFound(f"No count #{pk}.")
        return count

    @extend_schema(
        summary="List counts",
        description="Newest first, without their lines.",
        responses={200: StockCountSummaryOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(StockCountSummaryOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Get a count with its lines",
        responses={200: StockCountOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def retrieve(self, request, pk=None):
        return Response(StockCountOutputSerializer(self._detail(pk)).data)

    @extend_schema(
        summary="Submit a count",
        description="What was counted at a location at a moment (it fills the location's open "
        "count request, if any). Reconciliation compares it with the ledger later; the lines "
        "then show the expected quantity.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=StockCountInputSerializer,
        responses={201: StockCountOutputSerializer, **WRITE_ERRORS, **IDEMPOTENCY_ERRORS},
    )
    def create(self, request, *args, **kwargs):
        serializer = StockCountInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        count = stock_count_submit(
            location=resolve_location(data["location"]),
            counted_at=data["counted_at"],
            lines=[{"sku": line["sku"], "quantity": line["quantity"]} for line in data["lines"]],
            kind=data["kind"],
            reference=data["reference"],
            source=request_source(request),
            actor=request_actor(request),
        )
        return Response(
            StockCountOutputSerializer(self._detail(count.pk)).data,
            status=status.HTTP_201_CREATED,
        )


# --- Transfers --------------------------------------------------------------------------------


TRANSFER_ACTION_ERRORS = {
    **WRITE_ERRORS,
    **NOT_FOUND,
    409: OpenApiResponse(
        ErrorSerializer,
        description="`invalid_transition` (not in the right status), or an idempotency conflict.",
    ),
    422: ErrorSerializer,
}


class TransferViewSet(CachedTokenMixin, IdempotentMixin, viewsets.GenericViewSet):
    """Stock moved between locations: requested (held at the source), shipped (in transit),
    received."""

    filterset_class = TransferFilter
    lookup_field = "number"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return (
            Transfer.objects.select_related("from_location", "to_location")
            .prefetch_related(
                Prefetch(
                    "lines",
                    queryset=TransferLine.objects.select_related("variant").order_by(
                        "variant__sku"
                    ),
                )
            )
            .order_by("-requested_at", "-pk")
        )

    def _get(self, number) -> Transfer:
        transfer = self.get_queryset().filter(number=number).first()
        if transfer is None:
            raise NotFound(f"No transfer {number}.")
        return transfer

    def _render(self, transfer: Transfer, status_code=status.HTTP_200_OK) -> Response:
        fresh = self._get(transfer.number)
        return Response(TransferOutputSerializer(fresh).data, status=status_code)

    def _quantities(self, request) -> dict | None:
        serializer = TransferQuantitiesInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        quantities = serializer.validated_data.get("quantities")
        if quantities is None:
            return None
        return {normalize_sku(sku): quantity for sku, quantity in quantities.items()}

    @extend_schema(
        summary="List transfers",
        description="Newest first, with their lines.",
        responses={200: TransferOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(TransferOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Get a transfer by number",
        responses={200: TransferOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def retrieve(self, request, number=None):
        return Response(TransferOutputSerializer(self._get(number)).data)

    @extend_schema(
        summary="Request a transfer",
        description="The units are held at the source at once (every line or none; 409 "
        "`insufficient_stock` says how much each short line has).",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=TransferInputSerializer,
        responses={
            201: TransferOutputSerializer,
            **WRITE_ERRORS,
            409: OpenApiResponse(
                ErrorSerializer,
                description="`insufficient_stock` at the source, or an idempotency conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    def create(self, request, *args, **kwargs):
        serializer = TransferInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        transfer = transfer_request(
            from_location=resolve_location(data["from_location"], "from_location"),
            to_location=resolve_location(data["to_location"], "to_location"),
            lines=[{"sku": line["sku"], "quantity": line["quantity"]} for line in data["lines"]],
            reference=data["reference"],
            note=data["note"],
            expected_at=data["expected_at"],
            actor=request_actor(request),
        )
        return self._render(transfer, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Ship a requested transfer",
        description="The goods leave the source. `quantities` by SKU (default: everything "
        "requested); what is not shipped is released at the source.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=TransferQuantitiesInputSerializer,
        responses={200: TransferOutputSerializer, **TRANSFER_ACTION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def ship(self, request, number=None):
        transfer = self._get(number)
        quantities = self._quantities(request)
        transfer_ship(transfer=transfer, quantities=quantities, actor=request_actor(request))
        return self._render(transfer)

    @extend_schema(
        summary="Receive a shipped transfer",
        description="The goods arrive. `quantities` by SKU (default: everything shipped); a line "
        "received short keeps the difference visible.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=TransferQuantitiesInputSerializer,
        responses={200: TransferOutputSerializer, **TRANSFER_ACTION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def receive(self, request, number=None):
        transfer = self._get(number)
        quantities = self._quantities(request)
        transfer_receive(transfer=transfer, quantities=quantities, actor=request_actor(request))
        return self._render(transfer)

    @extend_schema(
        summary="Cancel a requested transfer",
        description="Only before it ships; the stock held at the source is released.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=None,
        responses={200: TransferOutputSerializer, **TRANSFER_ACTION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, number=None):
        transfer = self._get(number)
        transfer_cancel(transfer=transfer, actor=request_actor(request))
        return self._render(transfer)


# --- Reservations -----------------------------------------------------------------------------


class ReservationViewSet(
    CachedTokenMixin, IdempotentMixin, mixins.ListModelMixin, viewsets.GenericViewSet
):
    """Stock held for integrators' order lines and checkouts."""

    filterset_class = ReservationFilter
    serializer_class = ReservationOutputSerializer

    def get_queryset(self):
        return Reservation.objects.select_related("location", "variant", "channel").order_by("pk")

    @extend_schema(
        summary="List reservations",
        description="Filter by `reference` to see what is held for an order or a checkout.",
        responses={200: ReservationOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Hold stock for an order or a checkout",
        description="Every line or none. Lines are served from the locations that feed the "
        "channel, in the order of its allocation strategy (a line may be split), or only from "
        "their pinned `location`. 409 `insufficient_stock` lists each short line in "
        "`details.lines` (`index`, `sku`, `requested`, `available`).",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=ReservationInputSerializer,
        responses={
            201: ReservationCreateOutputSerializer,
            **WRITE_ERRORS,
            409: OpenApiResponse(
                ErrorSerializer,
                description="`insufficient_stock`, or an idempotency conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    def create(self, request, *args, **kwargs):
        serializer = ReservationInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        channel = Channel.objects.filter(code=data["channel"]).first()
        if channel is None:
            raise ValidationFailed(
                f"No channel with code {data['channel']}.",
                extra={"channel": [f"Unknown channel {data['channel']}."]},
            )
        codes = {line["location"] for line in data["lines"] if line["location"]}
        locations = {loc.code: loc for loc in Location.objects.filter(code__in=codes)}
        unknown = {
            str(index): {"location": [f"Unknown location {line['location']}."]}
            for index, line in enumerate(data["lines"])
            if line["location"] and line["location"] not in locations
        }
        if unknown:
            raise ValidationFailed("Some lines name unknown locations.", extra={"lines": unknown})
        near = data["near"]
        created = stock_reserve(
            channel=channel,
            reference=data["reference"],
            kind=data["kind"],
            expires_at=data["expires_at"],
            near=(near["latitude"], near["longitude"]) if near else None,
            lines=[
                ReserveLine(
                    variant=line["sku"],
                    quantity=line["quantity"],
                    location=locations.get(line["location"]) if line["location"] else None,
                    line_reference=line["line_reference"],
                )
                for line in data["lines"]
            ],
        )
        # As written, with their location, variant and channel: no need to read them back.
        return Response(
            {
                "reference": data["reference"],
                "reservations": ReservationOutputSerializer(created, many=True).data,
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Release held stock",
        description="Gives back what `reference` (or one of its lines) holds. Releasing what "
        "is not held releases nothing (0).",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=ReservationReferenceInputSerializer,
        responses={
            200: ReservationReleaseOutputSerializer,
            **WRITE_ERRORS,
            **IDEMPOTENCY_ERRORS,
        },
    )
    @action(detail=False, methods=["post"])
    def release(self, request):
        data = self._reference(request)
        released = stock_release(reference=data["reference"], line_reference=data["line_reference"])
        return Response({**data, "released": released})

    @extend_schema(
        summary="Fulfil held stock",
        description="The goods held for `reference` (or one of its lines) leave: a sale on "
        "the ledger. 400 `no_active_reservation` if nothing is held.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=ReservationReferenceInputSerializer,
        responses={
            200: ReservationConsumeOutputSerializer,
            **WRITE_ERRORS,
            **IDEMPOTENCY_ERRORS,
        },
    )
    @action(detail=False, methods=["post"])
    def consume(self, request):
        data = self._reference(request)
        movements = stock_consume(
            reference=data["reference"],
            line_reference=data["line_reference"],
            source=request_source(request),
            actor=request_actor(request),
        )
        return Response({**data, "consumed": -sum(m.quantity for m in movements)})

    def _reference(self, request) -> dict:
        serializer = ReservationReferenceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return {
            "reference": serializer.validated_data["reference"],
            "line_reference": serializer.validated_data["line_reference"],
        }
