"""Who may call the campaigns API beyond the common rule (``IsStaffOrApiClient``).

An API client bound to a sales channel (``ApiClient.channel``: the web shop's client, an app)
speaks for that channel only, as in the orders API: it subscribes customers on its own channel
(another is refused with 403), and lists and cancels its channel's subscriptions only (others
are not listed and not found). Staff and unbound clients see every channel.

The audience export hands out the hashed emails and phones of any segment
(``MayExportAudiences``): staff who may view customers, or a read-and-write client bound to no
channel.
"""

from rest_framework.exceptions import PermissionDenied

from customers.models import Customer
from omni.api.permissions import IsStaffOrApiClient, request_client
from omni.models import Channel

VIEW_CUSTOMER = f"{Customer._meta.app_label}.view_{Customer._meta.model_name}"


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


class MayExportAudiences(IsStaffOrApiClient):
    """The audience export: personal data (hashed) of customers of every channel, whatever the
    method. Staff need the permission to view customers (as the admin's export); an API client
    needs write access (as the customers API's export of personal data) and no channel (a
    channel's client speaks for that channel only; an audience spans them all)."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        client = request_client(request)
        if client is None:
            if not request.user.has_perm(VIEW_CUSTOMER):
                self.message = "Exporting an audience takes the permission to view customers."
                return False
            return True
        if not client.can_write:
            self.message = (
                "Exporting an audience hands out personal data: it needs a read-and-write "
                "API client."
            )
            return False
        if client.channel_id is not None:
            own = Channel.objects.filter(pk=client.channel_id).values_list("code", flat=True)
            self.message = (
                f"This API client speaks for channel {own.first()}; an audience spans every "
                "channel: export it with a client bound to no channel."
            )
            return False
        return True
