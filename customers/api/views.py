"""Customers API: unified profiles found by any identifier, their timeline across channels,
consents, conversations, segments, merges and privacy requests. Views parse input, call one
service or selector, and render the result; every rule and every error comes from the
services."""

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from customers import selectors
from customers.api.filters import ConversationFilter, CustomerFilter
from customers.api.permissions import IsStaffOrWriteClient
from customers.api.serializers import (
    MAX_IDENTIFIERS,
    ConversationDetailOutputSerializer,
    ConversationMessageInputSerializer,
    ConversationMessageOutputSerializer,
    ConversationMessageResultOutputSerializer,
    ConversationOutputSerializer,
    ConversationStatusInputSerializer,
    CustomerConsentInputSerializer,
    CustomerConsentsOutputSerializer,
    CustomerCreateInputSerializer,
    CustomerDetailOutputSerializer,
    CustomerEraseInputSerializer,
    CustomerEraseOutputSerializer,
    CustomerIdField,
    CustomerMergeInputSerializer,
    CustomerMergeOutputSerializer,
    CustomerOutputSerializer,
    CustomerProfileInputSerializer,
    CustomerResolveInputSerializer,
    CustomerResolveOutputSerializer,
    SegmentOutputSerializer,
    TouchpointBatchInputSerializer,
    TouchpointBatchOutputSerializer,
)
from customers.identifiers import Identifier, identifiers_parse
from customers.models import (
    Consent,
    ConsentState,
    Conversation,
    ConversationMessage,
    Customer,
    CustomerChannelStat,
    Identity,
    Segment,
    SegmentRule,
)
from customers.segments import segment_queryset
from customers.services import (
    consent_record,
    conversation_message_receive,
    conversation_update,
    customer_create,
    customer_erase,
    customer_export,
    customer_merge,
    customer_resolve,
    customer_update,
    touchpoints_ingest,
)
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
from omni.api.permissions import request_actor, request_source
from omni.exceptions import NotFound, ValidationFailed
from omni.models import Channel

CUSTOMER_NOT_FOUND = {
    404: OpenApiResponse(
        ErrorSerializer,
        description="`not_found`, or `customer_merged` when the id was merged into another "
        "customer (`details.survivor` is that customer's id).",
    )
}
CUSTOMER_CONFLICTS = {
    409: OpenApiResponse(
        ErrorSerializer,
        description="`customer_erased` (the customer was erased), or an idempotency conflict.",
    ),
    422: ErrorSerializer,
}
ID_REGEX = "[0-9]{1,18}"  # a bigint, so a long number is a 404 rather than a database error


# --- Helpers: what the body holds -------------------------------------------------------------


def json_object(request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The body must be a JSON object.",
            extra={"non_field_errors": ["Expected a JSON object."]},
        )
    return data


def identifiers_from_body(raw) -> list[Identifier]:
    """The identifiers of a body, normalised; every error by index."""
    if isinstance(raw, list) and len(raw) > MAX_IDENTIFIERS:
        raise ValidationFailed(
            f"At most {MAX_IDENTIFIERS} identifiers.",
            extra={"identifiers": [f"At most {MAX_IDENTIFIERS}."]},
        )
    return identifiers_parse(raw)


def sender_from_body(body: dict) -> tuple[list[Identifier], int | None]:
    """Whom a body names: its ``identifiers`` (normalised, errors by index; none sent is an
    empty list) and its ``customer`` id (as ``CustomerIdField`` takes it). Whether there is
    an identifier or an id is the service's rule."""
    try:
        customer_id = CustomerIdField().run_validation(body.get("customer"))
    except serializers.ValidationError as error:
        raise ValidationFailed(
            "A customer id is a whole number.",
            extra={"customer": [str(message) for message in error.detail]},
        ) from None
    raw = body.get("identifiers")
    return ([] if raw in (None, []) else identifiers_from_body(raw)), customer_id


def channel_from_body(code: str, field: str = "channel") -> Channel:
    channel = Channel.objects.filter(code=code).first()
    if channel is None:
        raise ValidationFailed(
            f"No channel with code {code}.", extra={field: [f"Unknown channel {code}."]}
        )
    return channel


def with_profile(queryset: QuerySet) -> QuerySet:
    """Customers with what ``CustomerOutputSerializer`` reads, in a constant number of
    queries."""
    return queryset.select_related("home_store", "preferred_channel").prefetch_related(
        Prefetch("identities", queryset=Identity.objects.order_by("kind", "value"))
    )


def customer_details() -> QuerySet:
    """Customers with what ``CustomerDetailOutputSerializer`` reads."""
    return with_profile(Customer.objects.all()).prefetch_related(
        Prefetch(
            "consent_states",
            queryset=ConsentState.objects.select_related("channel").order_by("channel__code"),
        ),
        Prefetch(
            "channel_stats",
            queryset=CustomerChannelStat.objects.select_related("channel").order_by(
                "channel__code"
            ),
        ),
    )


def customer_detail_data(pk) -> dict:
    return CustomerDetailOutputSerializer(customer_details().get(pk=pk)).data


# --- Customers --------------------------------------------------------------------------------


class CustomerViewSet(CachedTokenMixin, IdempotentMixin, viewsets.GenericViewSet):
    """One customer across every channel, found by any identifier."""

    filterset_class = CustomerFilter
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        return with_profile(Customer.objects.order_by("-pk"))

    @extend_schema(
        summary="List customers",
        description="Newest first. Erased customers are listed too (`erased: true`) unless "
        "`erased=false`.",
        responses={200: CustomerOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(CustomerOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a customer with her identifiers",
        description="For a customer you know to be new. 409 `identifier_taken` if an "
        "identifier already belongs to someone: open that customer, or use `resolve`.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CustomerCreateInputSerializer,
        responses={
            201: CustomerDetailOutputSerializer,
            **WRITE_ERRORS,
            409: OpenApiResponse(
                ErrorSerializer,
                description="`identifier_taken`, or an idempotency conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    def create(self, request, *args, **kwargs):
        body = json_object(request)
        identifiers = identifiers_from_body(body.get("identifiers"))
        customer = customer_create(
            data={name: value for name, value in body.items() if name != "identifiers"},
            identifiers=identifiers,
            source=request_source(request),
            actor=request_actor(request),
        )
        return Response(customer_detail_data(customer.pk), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Get a customer",
        description="The profile with her identifiers, current consents, channels used and "
        "lifetime statistics.",
        responses={200: CustomerDetailOutputSerializer, **READ_ERRORS, **CUSTOMER_NOT_FOUND},
    )
    def retrieve(self, request, pk=None):
        customer = selectors.customer_get(pk, customer_details())
        return Response(CustomerDetailOutputSerializer(customer).data)

    @extend_schema(
        summary="Change a customer's profile",
        description="Only the fields sent change; an unknown or invalid field refuses the "
        "whole change.",
        request=CustomerProfileInputSerializer,
        responses={
            200: CustomerDetailOutputSerializer,
            **WRITE_ERRORS,
            **CUSTOMER_NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="`customer_erased`."),
        },
    )
    def partial_update(self, request, pk=None):
        customer = selectors.customer_get(pk)
        customer_update(customer=customer, data=json_object(request), actor=request_actor(request))
        return Response(customer_detail_data(customer.pk))

    @extend_schema(
        summary="Find or create the customer behind identifiers",
        description="Known identifiers find their customer and new ones are attached to her; "
        "none known creates a customer; identifiers of several customers merge them into the "
        "oldest. Profile fields sent are set on her; one refused refuses the whole call, before "
        "anyone is created, attached or merged.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CustomerResolveInputSerializer,
        responses={
            200: CustomerResolveOutputSerializer,
            **WRITE_ERRORS,
            404: OpenApiResponse(ErrorSerializer, description="`not_found`: no such `customer`."),
            **CUSTOMER_CONFLICTS,
        },
    )
    @action(detail=False, methods=["post"])
    def resolve(self, request):
        body = json_object(request)
        identifiers, customer_id = sender_from_body(body)
        profile = {k: v for k, v in body.items() if k not in ("identifiers", "customer")}
        customer, resolution = customer_resolve(
            identifiers=identifiers,
            customer_id=customer_id,
            profile=profile or None,
            source=request_source(request),
            actor=request_actor(request),
        )
        return Response(
            {
                "customer": customer_detail_data(customer.pk),
                "created": customer.pk in resolution.created,
                "merged": [merge.merged_customer_id for merge in resolution.merges],
                "attached": resolution.attached,
            }
        )

    @extend_schema(
        summary="Merge customers who are one person",
        description="Into the oldest of them; everything of the others follows it, and their "
        "ids answer 404 `customer_merged` from then on.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CustomerMergeInputSerializer,
        responses={
            200: CustomerMergeOutputSerializer,
            **WRITE_ERRORS,
            404: ErrorSerializer,
            **CUSTOMER_CONFLICTS,
        },
    )
    @action(detail=False, methods=["post"])
    def merge(self, request):
        serializer = CustomerMergeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        survivor, records = customer_merge(
            customers=data["customers"],
            reason=data["reason"],
            source=request_source(request),
            actor=request_actor(request),
        )
        return Response(
            {
                "survivor": customer_detail_data(survivor.pk),
                "merged": [record.merged_customer_id for record in records],
            }
        )

    def _consents(self, pk) -> dict:
        current = sorted(selectors.consent_current(pk).values(), key=lambda s: s.channel.code)
        history = (
            Consent.objects.filter(customer_id=pk)
            .select_related("channel")
            .order_by("-occurred_at", "-id")
        )
        return CustomerConsentsOutputSerializer(
            {"customer": pk, "current": current, "history": history}
        ).data

    @extend_schema(
        summary="A customer's consents",
        description="The current answer per messaging channel, and every decision (newest "
        "first) as the proof of what she said when.",
        responses={200: CustomerConsentsOutputSerializer, **READ_ERRORS, **CUSTOMER_NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def consents(self, request, pk=None):
        customer = selectors.customer_get(pk, Customer.objects.only("pk"))
        return Response(self._consents(customer.pk))

    @extend_schema(
        summary="Record a consent",
        description="An opt-in or opt-out on a messaging channel. A decision older than the "
        "current one is kept in the history without changing the current answer.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CustomerConsentInputSerializer,
        responses={
            201: CustomerConsentsOutputSerializer,
            **WRITE_ERRORS,
            **CUSTOMER_NOT_FOUND,
            **CUSTOMER_CONFLICTS,
        },
    )
    @consents.mapping.post
    def consent_add(self, request, pk=None):
        customer = selectors.customer_get(pk)
        serializer = CustomerConsentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        consent_record(
            customer=customer,
            channel=channel_from_body(data["channel"]),
            status=data["status"],
            source=data.get("source") or request_source(request),
            occurred_at=data.get("occurred_at"),
            proof=data["proof"],
            actor=request_actor(request),
        )
        return Response(self._consents(customer.pk), status=status.HTTP_201_CREATED)


class CustomerPrivacyViewSet(IdempotentMixin, viewsets.GenericViewSet):
    """Export and erasure of a customer's personal data: staff and write clients only, and the
    token always checked against the database (no token cache: the export records itself)."""

    permission_classes = [IsStaffOrWriteClient]
    lookup_value_regex = ID_REGEX
    queryset = Customer.objects.all()
    pagination_class = None
    filter_backends = []

    @extend_schema(
        summary="Export a customer's data",
        description="Everything held about her, as JSON (the profile and the rows of every "
        "model that points at her). The export is recorded.",
        parameters=[OpenApiParameter("reason", OpenApiTypes.STR, description="Why (recorded).")],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The customer's data."),
            **READ_ERRORS,
            **CUSTOMER_NOT_FOUND,
        },
    )
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        customer = selectors.customer_get(pk)
        data = customer_export(
            customer=customer,
            source=request_source(request),
            actor=request_actor(request),
            reason=request.query_params.get("reason", ""),
        )
        return Response(data)

    @extend_schema(
        summary="Erase a customer's personal data",
        description="Identifiers, timeline, consents and conversations go; the profile stays, "
        "anonymised, so orders keep their customer. 409 `customer_erased` if done before.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CustomerEraseInputSerializer,
        responses={
            200: CustomerEraseOutputSerializer,
            **WRITE_ERRORS,
            **CUSTOMER_NOT_FOUND,
            **CUSTOMER_CONFLICTS,
        },
    )
    @action(detail=True, methods=["post"])
    def erase(self, request, pk=None):
        customer = selectors.customer_get(pk)
        serializer = CustomerEraseInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        removed = customer_erase(
            customer=customer,
            source=request_source(request),
            actor=request_actor(request),
            reason=serializer.validated_data["reason"],
        )
        erased_at = Customer.objects.filter(pk=customer.pk).values_list("erased_at", flat=True)
        return Response({"customer": customer.pk, "erased_at": erased_at.get(), "removed": removed})


# --- Touchpoints ------------------------------------------------------------------------------


class TouchpointBatchView(IdempotentMixin, APIView):
    """Events of every channel, in batches, each recorded once."""

    @extend_schema(
        summary="Send a batch of touchpoints",
        description="Up to 1,000 events, each with your own `event_id` and the identifiers the "
        "channel knows the customer by (or a customer id). The batch is recorded whole or, if "
        "an event is invalid, not at all, with every error by index in `details.events` "
        "(400 `invalid_batch`). An event whose `event_id` you sent before is skipped and "
        "counted in `duplicates`, so sending a batch again is harmless. Customers are found, "
        "created or merged as the identifiers say.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=TouchpointBatchInputSerializer,
        responses={
            201: TouchpointBatchOutputSerializer,
            **WRITE_ERRORS,
            409: OpenApiResponse(
                ErrorSerializer,
                description="`conflict`: customers changed too often while resolving (send the "
                "batch again), or an idempotency conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    def post(self, request):
        # The events go to the service as sent: it checks them set-based, by index.
        body = json_object(request)
        result = touchpoints_ingest(source=request_source(request), events=body.get("events"))
        return Response(result.as_dict, status=status.HTTP_201_CREATED)


# --- Conversations ----------------------------------------------------------------------------


class ConversationViewSet(CachedTokenMixin, IdempotentMixin, viewsets.GenericViewSet):
    """Support threads; messages from any channel join the customer's open conversation."""

    filterset_class = ConversationFilter
    lookup_value_regex = ID_REGEX

    def get_queryset(self):
        return Conversation.objects.select_related("assignee", "started_on").order_by(
            "-last_message_at", "-id"
        )

    def _get(self, pk, queryset: QuerySet | None = None) -> Conversation:
        queryset = self.get_queryset() if queryset is None else queryset
        conversation = queryset.filter(pk=pk).first()
        if conversation is None:
            raise NotFound(f"No conversation {pk}.")
        return conversation

    @extend_schema(
        summary="List conversations",
        description="Latest message first, without their messages.",
        responses={200: ConversationOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(ConversationOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Get a conversation with its messages",
        responses={200: ConversationDetailOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def retrieve(self, request, pk=None):
        messages = ConversationMessage.objects.select_related("channel", "author").order_by(
            "sent_at", "id"
        )
        conversation = self._get(
            pk, self.get_queryset().prefetch_related(Prefetch("messages", queryset=messages))
        )
        return Response(ConversationDetailOutputSerializer(conversation).data)

    @extend_schema(
        summary="Add a message to a customer's conversation",
        description="The customer is found (or created) by the identifiers, or given by id. "
        "The message joins her open conversation (or one closed in the last days, reopened; or "
        "a new one). 201 for a new message; sending the same `external_id` again answers 200 "
        "with the message recorded first and adds nothing, whatever identifiers it names. An "
        "`external_id` already on another customer's message is 409 `external_id_reused`.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=ConversationMessageInputSerializer,
        responses={
            # One success code per operation (tests/omni/test_schema.py): the replay's 200,
            # with the same body, is described here.
            201: OpenApiResponse(
                ConversationMessageResultOutputSerializer,
                description="Added (`created: true`). **200** with this same body and "
                "`created: false` for a repeat of an `external_id` you sent before: the "
                "message recorded first; nothing is added and nobody is resolved.",
            ),
            **WRITE_ERRORS,
            404: OpenApiResponse(
                ErrorSerializer,
                description="`not_found`: the `customer` or the `conversation` named is unknown.",
            ),
            409: OpenApiResponse(
                ErrorSerializer,
                description="`customer_erased` (the customer was erased), `external_id_reused` "
                "(the `external_id` is already on another customer's message), or an "
                "idempotency conflict.",
            ),
            422: ErrorSerializer,
        },
    )
    @action(detail=False, methods=["post"])
    def messages(self, request):
        body = json_object(request)
        serializer = ConversationMessageInputSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        identifiers, customer_id = sender_from_body(body)
        message, created = conversation_message_receive(
            identifiers=identifiers,
            customer_id=customer_id,
            channel=channel_from_body(data["channel"]),
            body=data["body"],
            source=request_source(request),
            direction=data["direction"],
            external_id=data["external_id"],
            sent_at=data.get("sent_at"),
            subject=data["subject"],
            conversation_id=data.get("conversation"),
            actor=request_actor(request),
        )
        message = ConversationMessage.objects.select_related(
            "channel", "author", "conversation__assignee", "conversation__started_on"
        ).get(pk=message.pk)
        return Response(
            {
                "created": created,
                "customer": message.conversation.customer_id,
                "conversation": ConversationOutputSerializer(message.conversation).data,
                "message": ConversationMessageOutputSerializer(message).data,
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        summary="Close, reopen or assign a conversation",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=ConversationStatusInputSerializer,
        responses={
            200: ConversationOutputSerializer,
            **WRITE_ERRORS,
            **NOT_FOUND,
            **IDEMPOTENCY_ERRORS,
        },
    )
    @action(detail=True, methods=["post"], url_path="status", url_name="status")
    def set_status(self, request, pk=None):
        conversation = self._get(pk, Conversation.objects.only("pk"))
        serializer = ConversationStatusInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        changes = {}
        if "assignee" in data:
            username = data["assignee"]
            changes["assignee"] = None
            if username is not None:
                changes["assignee"] = get_user_model().objects.filter(username=username).first()
                if changes["assignee"] is None:
                    raise ValidationFailed(
                        f"No user {username}.", extra={"assignee": [f"Unknown user {username}."]}
                    )
        conversation_update(
            conversation=conversation,
            status=data.get("status"),
            actor=request_actor(request),
            **changes,
        )
        return Response(ConversationOutputSerializer(self._get(pk)).data)


# --- Segments ---------------------------------------------------------------------------------


class SegmentViewSet(CachedTokenMixin, viewsets.GenericViewSet):
    """Groups of customers described by rules staff compose in the admin."""

    lookup_value_regex = ID_REGEX
    filter_backends = []

    def get_queryset(self):
        return Segment.objects.prefetch_related(
            Prefetch("rules", queryset=SegmentRule.objects.select_related("channel", "location"))
        ).order_by("name")

    @extend_schema(
        summary="List segments",
        description="With their rules described and the member count of the last hourly count.",
        responses={200: SegmentOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(SegmentOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="A segment's members, now",
        description="Customers the segment's rules match at this moment, by id (erased "
        "customers never belong to a segment).",
        responses={200: CustomerOutputSerializer(many=True), **LIST_ERRORS, **NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def members(self, request, pk=None):
        segment = self.get_queryset().filter(pk=pk).first()
        if segment is None:
            raise NotFound(f"No segment {pk}.")
        members = segment_queryset(segment, rules=list(segment.rules.all()))
        page = self.paginate_queryset(with_profile(members.order_by("pk")))
        return self.get_paginated_response(CustomerOutputSerializer(page, many=True).data)
