"""Campaigns API: back-in-stock subscriptions (subscribe, list, cancel), the retargeting
audience export (hashed identifiers as CSV), campaigns with their steps, a customer's messages
and enrolments, and the gateway's delivery receipts. Views parse input, call one service or
selector, and render the result; every rule and every error comes from the services.

An API client bound to a channel subscribes on its own channel only, and may not export an
audience (``campaigns.api.permissions``). Receipts are authenticated by the gateway's
signature, not by a token (``campaigns.api.authentication``).
"""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import selectors
from campaigns.api.authentication import GatewaySignatureAuthentication, IsGateway
from campaigns.api.filters import (
    CampaignFilter,
    EnrolmentFilter,
    MessageFilter,
    SubscriptionFilter,
)
from campaigns.api.permissions import (
    MayExportAudiences,
    caller_channel_id,
    require_own_channel,
    scoped,
)
from campaigns.api.serializers import (
    CampaignOutputSerializer,
    EnrolmentOutputSerializer,
    MessageOutputSerializer,
    ReceiptInputSerializer,
    ReceiptOutputSerializer,
    SubscriptionCreateInputSerializer,
    SubscriptionOutputSerializer,
)
from campaigns.services.audiences import audience_csv
from campaigns.services.receipts import receipt_record
from campaigns.services.subscriptions import subscription_cancel, subscription_create
from catalog.models import Variant
from catalog.validators import normalize_sku
from customers.identifiers import identifiers_parse
from customers.models import Segment
from customers.selectors import customer_get
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

ID_REGEX = "[0-9]{1,18}"  # a bigint, so a long number is a 404 rather than a database error
ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH)


# --- Helpers: what the body names -------------------------------------------------------------


def json_object(request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The body must be a JSON object.",
            extra={"non_field_errors": ["Expected a JSON object."]},
        )
    return data


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


def variant_for(sku: str) -> Variant:
    variant = Variant.objects.filter(sku=normalize_sku(sku)).first()
    if variant is None:
        raise ValidationFailed(f"No SKU {sku}.", extra={"sku": [f"Unknown SKU {sku}."]})
    return variant


# --- Subscriptions ----------------------------------------------------------------------------

SUBSCRIPTION_ERRORS = {
    **WRITE_ERRORS,
    404: OpenApiResponse(
        ErrorSerializer,
        description="`not_found` or `customer_merged`: the `customer` named is unknown or was "
        "merged into another (`details.survivor`).",
    ),
    409: OpenApiResponse(
        ErrorSerializer,
        description="`customer_erased`, or an idempotency conflict.",
    ),
    422: ErrorSerializer,
}


class SubscriptionViewSet(CachedTokenMixin, IdempotentMixin, viewsets.GenericViewSet):
    """Customers waiting for an item to be back on a sales channel; a back-in-stock campaign
    tells them once, on a messaging channel they agreed to."""

    filterset_class = SubscriptionFilter
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        return scoped(selectors.subscriptions(), self.request)

    @extend_schema(
        summary="List back-in-stock subscriptions",
        description="Newest first. A client bound to a channel sees its channel's only.",
        responses={200: SubscriptionOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(SubscriptionOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Subscribe a customer to an item coming back",
        description="The customer is given by id, or by the identifiers the channel knows her "
        "by (found, created or merged by identity resolution). The item must be listed on the "
        "sales channel (default: the one your API client is bound to; a bound client may not "
        "name another). Subscribing implies no consent: she is told only on a messaging "
        "channel she opted in on.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=SubscriptionCreateInputSerializer,
        responses={
            201: OpenApiResponse(
                SubscriptionOutputSerializer,
                description="Subscribed. **200** with this same body when she was already "
                "waiting for the item on that channel: the open subscription, unchanged.",
            ),
            **SUBSCRIPTION_ERRORS,
        },
    )
    def create(self, request, *args, **kwargs):
        body = json_object(request)
        serializer = SubscriptionCreateInputSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        raw = data.get("identifiers")
        identifiers = identifiers_parse(raw) if raw else []
        channel = channel_for(request, data["channel"])
        variant = variant_for(data["sku"])
        customer = customer_get(data["customer"]) if data["customer"] is not None else None
        subscription = subscription_create(
            customer=customer,
            identifiers=identifiers,
            variant=variant,
            channel=channel,
            source=request_source(request),
            actor=request_actor(request),
        )
        return Response(
            SubscriptionOutputSerializer(subscription).data,
            status=status.HTTP_201_CREATED if subscription.created else status.HTTP_200_OK,
        )

    @extend_schema(
        summary="Cancel a back-in-stock subscription",
        description="She no longer waits: the subscription is removed and its last state "
        "returned. One already used by a back-in-stock campaign is kept as its record "
        "(409 `subscription_used`).",
        parameters=[ID_PARAMETER],
        request=None,
        responses={
            200: SubscriptionOutputSerializer,
            **WRITE_ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="`subscription_used`."),
        },
    )
    def destroy(self, request, pk=None):
        subscription = self.get_queryset().filter(pk=pk).first()
        if subscription is None:
            raise NotFound(f"No subscription {pk}.")
        data = SubscriptionOutputSerializer(subscription).data
        subscription_cancel(subscription=subscription)
        return Response(data)


# --- Audiences --------------------------------------------------------------------------------


class AudienceExportView(APIView):
    """Hashed identifiers of a segment or of the abandoned-cart audience, for ad platforms.

    Who may call (``MayExportAudiences``): the hashes are personal data of customers of every
    channel, so staff need the permission to view customers (``customers.view_customer``, as
    the admin's export), and an API client needs read-and-write access and no channel (a
    read-only client, or one bound to a channel, is refused with 403).
    """

    permission_classes = [MayExportAudiences]

    @extend_schema(
        operation_id="campaigns_audiences_export",
        summary="Export a retargeting audience as CSV",
        description="Header `email_sha256,phone_sha256`, then one row per customer: the "
        "lower-case hex SHA-256 of her main email (trimmed, lower-cased) and of her main phone "
        "(E.164 with its `+`), either cell empty when she has none, as Google Ads Customer "
        "Match takes them. Only customers who were not erased and opted in on an ads-audience "
        "channel. Give `segment` or `abandoned_carts=1` (customers with an open cart holding "
        "lines, idle at least `min_idle_minutes`), not both. Streamed. Only for staff who may "
        "view customers and for read-and-write API clients bound to no channel.",
        parameters=[
            OpenApiParameter("segment", int, description="A segment id."),
            OpenApiParameter(
                "abandoned_carts", bool, description="`1` or `true`: the abandoned-cart audience."
            ),
            OpenApiParameter(
                "min_idle_minutes",
                int,
                description="Abandoned carts: idle at least this long (default 60).",
            ),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The audience."),
            **{code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 404)},
            403: OpenApiResponse(
                ErrorSerializer,
                description="`permission_denied`: staff without the permission to view "
                "customers, a read-only API client, or a client bound to a channel.",
            ),
        },
    )
    def get(self, request):
        params = request.query_params
        errors = {}
        segment_id = _whole(params.get("segment"), "segment", errors)
        minutes = _whole(params.get("min_idle_minutes"), "min_idle_minutes", errors)
        abandoned = params.get("abandoned_carts", "")
        if abandoned not in ("", "0", "1", "true", "false"):
            errors["abandoned_carts"] = ["Enter true or false."]
        if errors:
            raise ValidationFailed("The request has invalid parameters.", extra=errors)
        abandoned = abandoned in ("1", "true")
        segment = None
        if segment_id is not None:
            segment = Segment.objects.filter(pk=segment_id).first()
            if segment is None:
                raise NotFound(f"No segment {segment_id}.")
        lines = audience_csv(
            segment=segment,
            abandoned_carts=abandoned,
            min_idle_minutes=60 if minutes is None else minutes,
        )
        name = f"segment-{segment.pk}" if segment is not None else "abandoned-carts"
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="audience-{name}.csv"'
        return response

    def perform_content_negotiation(self, request, force=False):
        # CSV whatever the client accepts (errors are JSON).
        return super().perform_content_negotiation(request, force=True)


def _whole(value, name, errors) -> int | None:
    if value in (None, ""):
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        errors[name] = ["A whole number."]
        return None
    return int(value)


# --- Campaigns, messages, enrolments ----------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List campaigns",
        description="By name, each with its steps.",
        responses={200: CampaignOutputSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a campaign with its steps",
        parameters=[ID_PARAMETER],
        responses={200: CampaignOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    ),
)
class CampaignViewSet(CachedTokenMixin, viewsets.ReadOnlyModelViewSet):
    """Campaigns staff run from the admin (read-only here)."""

    serializer_class = CampaignOutputSerializer
    filterset_class = CampaignFilter
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        return selectors.campaigns_with_steps()

    def get_object(self):
        campaign = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if campaign is None:
            raise NotFound(f"No campaign {self.kwargs['pk']}.")
        return campaign


@extend_schema_view(
    list=extend_schema(
        summary="A customer's campaign messages",
        description="Newest first: each message's campaign, step, channel, status (with the "
        "reason it was suppressed or failed) and its sent, delivered and clicked times. "
        "`customer` is required.",
        responses={200: MessageOutputSerializer(many=True), **LIST_ERRORS},
    ),
)
class MessageViewSet(CachedTokenMixin, viewsets.GenericViewSet):
    filterset_class = MessageFilter

    def get_queryset(self):
        return selectors.messages_for_customer()

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(MessageOutputSerializer(page, many=True).data)


@extend_schema_view(
    list=extend_schema(
        summary="Campaign enrolments",
        description="Newest first, of a customer and/or a campaign: the subject she was "
        "enrolled for, where she is in the steps, how she left, and the order she converted "
        "with.",
        responses={200: EnrolmentOutputSerializer(many=True), **LIST_ERRORS},
    ),
)
class EnrolmentViewSet(CachedTokenMixin, viewsets.GenericViewSet):
    filterset_class = EnrolmentFilter

    def get_queryset(self):
        return selectors.enrolments_for()

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(EnrolmentOutputSerializer(page, many=True).data)


# --- Receipts ---------------------------------------------------------------------------------


class ReceiptView(APIView):
    """Delivery receipts from the gateway."""

    authentication_classes = [GatewaySignatureAuthentication]
    permission_classes = [IsGateway]

    @extend_schema(
        summary="Record a delivery receipt (gateway webhook)",
        description="Called by the SMS/push/social gateway, signed like the gateway backend's "
        "requests (`X-Omni-Timestamp`, `X-Omni-Signature`); no token. A sent message becomes "
        "`delivered` or `failed`; the same receipt again changes nothing (`changed: false`). "
        "A message not sent yet is 409 `message_not_sent` (retry later); a failure after a "
        "delivery 409 `receipt_conflict`.",
        parameters=[
            OpenApiParameter(
                "X-Omni-Timestamp",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="Unix time in seconds, signed with the body.",
            )
        ],
        request=ReceiptInputSerializer,
        responses={
            200: ReceiptOutputSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: OpenApiResponse(
                ErrorSerializer,
                description="`invalid_signature`: unsigned, wrongly signed, or signed too "
                "long ago (a replay).",
            ),
            404: OpenApiResponse(ErrorSerializer, description="`not_found`: no such message."),
            409: OpenApiResponse(
                ErrorSerializer,
                description="`message_not_sent`, `receipt_conflict` or `provider_id_ambiguous`.",
            ),
        },
    )
    def post(self, request):
        body = json_object(request)
        message = receipt_record(
            status=body.get("status"),
            message_id=body.get("message_id"),
            provider_id=body.get("provider_id"),
            at=body.get("at"),
            detail=body.get("detail", ""),
        )
        return Response(ReceiptOutputSerializer(message).data)
