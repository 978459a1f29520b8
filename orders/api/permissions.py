"""Who may call the orders API beyond the common rule (``IsStaffOrApiClient``).

An API client bound to a channel (``ApiClient.channel``: the web shop's client, a
marketplace connector, ...) speaks for that channel only: it places, sees, lists and changes
the orders and carts of its channel, and nothing else. Orders and carts of other channels are
not found (404) and not listed; placing on another channel is refused (403). Staff and
unbound clients see every channel.
"""

from rest_framework.exceptions import PermissionDenied

from omni.api.permissions import IsStaffOrApiClient, request_client
from omni.models import Channel, ChannelKind


def caller_channel_id(request) -> int | None:
    """The channel the calling API client is bound to, or None (staff, unbound clients; no
    request: the schema generator)."""
    client = request_client(request) if request is not None else None
    return client.channel_id if client is not None else None


def scoped(queryset, request):
    """Orders or carts the caller may see: those of its channel for a bound client."""
    channel_id = caller_channel_id(request)
    return queryset if channel_id is None else queryset.filter(channel_id=channel_id)


def require_own_channel(request, code: str) -> None:
    """A bound client may only place orders and open carts on its own channel: naming any
    other (known or not) is refused before anything is looked at."""
    channel_id = caller_channel_id(request)
    if channel_id is None:
        return
    own = Channel.objects.filter(pk=channel_id).values_list("code", flat=True).first()
    if code != own:
        raise PermissionDenied(
            f"This API client speaks for channel {own}; it may not use channel {code}."
        )


class IsPosCaller(IsStaffOrApiClient):
    """Till sales: staff, or an API client that may write and is bound to no channel or to a
    store (POS) channel."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        channel_id = caller_channel_id(request)
        if channel_id is None:
            return True
        kind, code = Channel.objects.filter(pk=channel_id).values_list("kind", "code").first() or (
            None,
            None,
        )
        if kind != ChannelKind.STORE_POS:
            self.message = (
                f"This API client speaks for channel {code}, which is not a store (POS) "
                "channel; only POS clients record till sales."
            )
            return False
        return True
