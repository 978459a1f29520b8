"""Who may call the campaigns API beyond the common rule (``IsStaffOrApiClient``).

An API client bound to a sales channel (``ApiClient.channel``: the web shop's client, an app)
speaks for that channel only, as in the orders API: it subscribes customers on its own channel
(another is refused with 403), and lists and cancels its channel's subscriptions only (others
are not listed and not found). Staff and unbound clients see every channel.
"""

from rest_framework.exceptions import PermissionDenied

from omni.api.permissions import request_client
from omni.models import Channel


def caller_channel_id(request) -> int | None:
    """The channel the calling API client is bound to, or None (staff, unbound clients; no
    request: the schema generator)."""
    client = request_client(request) if request is not None else None
    return client.channel_id if client is not None else None


def scoped(queryset, request):
    """Subscriptions the caller may see: those of its channel for a bound client."""
    channel_id = caller_channel_id(request)
    return queryset if channel_id is None else queryset.filter(channel_id=channel_id)


def require_own_channel(request, code: str) -> None:
    """A bound client may only subscribe on its own channel: naming any other (known or not)
    is refused before anything is looked at."""
    channel_id = caller_channel_id(request)
    if channel_id is None:
        return
    own = Channel.objects.filter(pk=channel_id).values_list("code", flat=True).first()
    if code != own:
        raise PermissionDenied(
            f"This API client speaks for channel {own}; it may not use channel {code}."
        )
