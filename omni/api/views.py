from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from omni.api.authentication import CachedTokenMixin
from omni.api.errors import ErrorSerializer
from omni.api.filters import ChannelFilter
from omni.api.serializers import ChannelOutputSerializer
from omni.models import Channel

ERROR_RESPONSES = {400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer}


@extend_schema_view(
    list=extend_schema(
        summary="List channels",
        responses={200: ChannelOutputSerializer(many=True), **ERROR_RESPONSES},
    ),
    retrieve=extend_schema(
        summary="Get a channel by code",
        responses={200: ChannelOutputSerializer, 404: ErrorSerializer, **ERROR_RESPONSES},
    ),
)
class ChannelViewSet(CachedTokenMixin, viewsets.ReadOnlyModelViewSet):
    """Sales and messaging channels."""

    queryset = Channel.objects.all()
    serializer_class = ChannelOutputSerializer
    lookup_field = "code"
    filterset_class = ChannelFilter
