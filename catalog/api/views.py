"""Catalog API: products, variants (by SKU), listings per channel, changes feed and feeds."""

from django.db import transaction
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import selectors
from catalog.api.filters import ProductFilter, VariantChangesFilter, VariantFilter
from catalog.api.serializers import (
    ListingInputSerializer,
    ListingOutputSerializer,
    ProductCreateInputSerializer,
    ProductOutputSerializer,
    ProductUpdateInputSerializer,
    VariantChangeOutputSerializer,
    VariantCreateInputSerializer,
    VariantOutputSerializer,
    VariantUpdateInputSerializer,
)
from catalog.feeds import feed_chunks, feed_content_type
from catalog.models import Product, Variant
from catalog.services import (
    brand_get_or_create,
    category_ensure_path,
    listing_upsert,
    product_create,
    product_update,
    variant_create,
    variant_update,
)
from catalog.services.feeds import channel_feed_get
from catalog.validators import normalize_sku
from omni.api.authentication import CachedTokenMixin
from omni.api.errors import (
    IDEMPOTENCY_ERRORS,
    LIST_ERRORS,
    NOT_FOUND,
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorSerializer,
)
from omni.api.hot import hot_client, hot_response
from omni.api.idempotency import IDEMPOTENCY_PARAMETER, IdempotentMixin
from omni.api.pagination import ChangesCursorPagination
from omni.api.responses import rendered_now
from omni.exceptions import NotFound, ValidationFailed
from omni.models import Channel

SKU_REGEX = r"[A-Za-z0-9._-]+"


def _resolve_brand_category(data: dict) -> dict:
    if "brand" in data:
        data["brand"] = brand_get_or_create(name=data["brand"])
    if "category" in data:
        data["category"] = category_ensure_path(path=data["category"])
    return data


# The renderer DRF negotiates for a plain-JSON request: the same bytes on the hot path.
_JSON = JSONRenderer()


class ProductViewSet(
    CachedTokenMixin,
    IdempotentMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Products with their variants and listings, addressed by handle."""

    lookup_field = "handle"
    filterset_class = ProductFilter

    def get_queryset(self):
        return selectors.product_list().order_by("handle")

    @extend_schema(
        summary="List products",
        responses={200: ProductOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ProductOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Get a product by handle",
        responses={200: ProductOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def retrieve(self, request, *args, **kwargs):
        return Response(ProductOutputSerializer(self.get_object()).data)

    @extend_schema(
        summary="Create a product with its variants",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=ProductCreateInputSerializer,
        responses={201: ProductOutputSerializer, **WRITE_ERRORS, **IDEMPOTENCY_ERRORS},
    )
    def create(self, request, *args, **kwargs):
        serializer = ProductCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # One transaction: a refused product leaves no new brand or category behind.
        with transaction.atomic():
            product = product_create(**_resolve_brand_category(dict(serializer.validated_data)))
        product = selectors.product_list().get(pk=product.pk)
        return Response(ProductOutputSerializer(product).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a product",
        request=ProductUpdateInputSerializer,
        responses={200: ProductOutputSerializer, **WRITE_ERRORS, **NOT_FOUND},
    )
    def partial_update(self, request, *args, **kwargs):
        product = get_object_or_404(Product, handle=kwargs["handle"])
        serializer = ProductUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            data = _resolve_brand_category(dict(serializer.validated_data))
            product_update(product=product, **data)
        return Response(ProductOutputSerializer(selectors.product_list().get(pk=product.pk)).data)


class VariantViewSet(
    CachedTokenMixin,
    IdempotentMixin,
    viewsets.GenericViewSet,
):
    """Variants addressed by SKU, the identifier shared by every channel."""

    lookup_field = "sku"
    lookup_value_regex = SKU_REGEX
    filterset_class = VariantFilter

    def dispatch(self, request, *args, **kwargs):
        # The SKU lookup is the hottest read: its common request skips DRF (omni.api.hot).
        if self.action_map.get(request.method.lower()) == "retrieve":
            response = self._hot_retrieve(request, kwargs.get("sku", ""))
            if response is not None:
                return response
        return super().dispatch(request, *args, **kwargs)

    def _hot_retrieve(self, request, sku: str):
        hot = hot_client(request)
        if hot is None:
            return None
        sku = normalize_sku(sku)
        detail = selectors.variant_detail_by_sku(sku)
        if detail is None:
            request.omni_variant = sku  # DRF's path answers 404 without asking again
            return None
        return hot_response(self, request, _JSON.render(detail), hot[1])

    def get_queryset(self):
        return selectors.variant_list().order_by("sku")

    @extend_schema(
        summary="List variants",
        responses={200: VariantOutputSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        data = [selectors.variant_to_detail(v) for v in page]
        return self.get_paginated_response(VariantOutputSerializer(data, many=True).data)

    @extend_schema(
        summary="Look a variant up by SKU",
        description="The variant, its product and its listing on every channel, in one query.",
        responses={200: VariantOutputSerializer, **READ_ERRORS, **NOT_FOUND},
    )
    def retrieve(self, request, *args, **kwargs):
        sku = normalize_sku(kwargs["sku"])
        known = getattr(request._request, "omni_variant", None)  # the hot path's miss
        detail = None if known == sku else selectors.variant_detail_by_sku(sku)
        if detail is None:
            raise NotFound(f"No variant with SKU {kwargs['sku']}.")
        # already in the VariantOutputSerializer wire format; rendered at once (the hot path)
        return rendered_now(self, request, detail)

    @extend_schema(
        summary="Create a variant of a product",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=VariantCreateInputSerializer,
        responses={201: VariantOutputSerializer, **WRITE_ERRORS, **IDEMPOTENCY_ERRORS},
    )
    def create(self, request, *args, **kwargs):
        serializer = VariantCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        handle = data.pop("product")
        product = Product.objects.filter(handle=handle).first()
        if product is None:
            raise ValidationFailed(
                f"No product with handle {handle!r}.",
                extra={"product": [f"No product with handle {handle!r}."]},
            )
        variant = variant_create(product=product, **data)
        return Response(
            VariantOutputSerializer(selectors.variant_detail_by_sku(variant.sku)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Change a variant",
        request=VariantUpdateInputSerializer,
        responses={200: VariantOutputSerializer, **WRITE_ERRORS, **NOT_FOUND},
    )
    def partial_update(self, request, *args, **kwargs):
        variant = get_object_or_404(Variant, sku=normalize_sku(kwargs["sku"]))
        serializer = VariantUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        variant_update(variant=variant, **serializer.validated_data)
        return Response(VariantOutputSerializer(selectors.variant_detail_by_sku(variant.sku)).data)

    @extend_schema(
        summary="Variants changed since a time, oldest change first",
        description="Cursor-paginated: follow `next` until it is null, then keep the last "
        "`updated_at` for the next poll.",
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT, description="Page size (max 500)."),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="Cursor from `next`."),
        ],
        responses={200: VariantChangeOutputSerializer(many=True), **LIST_ERRORS},
    )
    @action(
        detail=False,
        methods=["get"],
        pagination_class=ChangesCursorPagination,
        filterset_class=VariantChangesFilter,
    )
    def changes(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(selectors.variant_list()))
        data = [selectors.variant_to_detail(v) for v in page]
        return self.get_paginated_response(VariantChangeOutputSerializer(data, many=True).data)

    @extend_schema(
        summary="Create or change the listing of a variant on a channel",
        description="Omitted fields keep their value; a new listing starts at the variant's "
        "base price in the channel's currency.",
        request=ListingInputSerializer,
        responses={200: ListingOutputSerializer, **WRITE_ERRORS, **NOT_FOUND},
    )
    @action(
        detail=True,
        methods=["put"],
        url_path=r"listings/(?P<channel>[a-z0-9_-]+)",
        url_name="listing",
    )
    def listing(self, request, *args, **kwargs):
        variant = get_object_or_404(
            Variant.objects.select_related("product"), sku=normalize_sku(kwargs["sku"])
        )
        channel = get_object_or_404(Channel, code=kwargs["channel"])
        serializer = ListingInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        listing = listing_upsert(variant=variant, channel=channel, **serializer.validated_data)
        detail = selectors.listing_to_dict(listing, variant.product.title)
        return Response(ListingOutputSerializer(detail).data)


class ChannelFeedView(APIView):
    """A sales channel's feed, in the format and with the fields set in the admin."""

    def perform_content_negotiation(self, request, force=False):
        # The feed's own format decides the content type, whatever the client accepts.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        summary="Download a channel's feed",
        description="CSV or JSON, as set for the channel in the admin, whatever the `Accept` "
        "header asks for.",
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV feed"),
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="JSON feed"
            ),
            **{code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403, 404)},
        },
    )
    def get(self, request, code):
        channel = get_object_or_404(Channel, code=code)
        feed = channel_feed_get(channel=channel)
        response = StreamingHttpResponse(feed_chunks(feed), content_type=feed_content_type(feed))
        response["Content-Disposition"] = f'inline; filename="{channel.code}.{feed.format}"'
        return response
