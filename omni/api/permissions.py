from rest_framework import permissions

from omni.models import ApiClient


def request_client(request) -> ApiClient | None:
    return request.auth if isinstance(request.auth, ApiClient) else None


def request_source(request) -> str:
    """Who sends a request, as recorded on ledgers, events, batches and idempotency keys:
    ``client:<pk>`` for an API client, ``user:<pk>`` for staff."""
    client = request_client(request)
    return f"client:{client.pk}" if client is not None else f"user:{request.user.pk}"


def request_actor(request):
    """The staff user behind a request, or None for an API client."""
    return None if request_client(request) is not None else request.user


class IsStaffOrApiClient(permissions.BasePermission):
    """Staff (session) may do anything; API clients read, and write when granted write access."""

    message = "Only staff and API clients may use the API."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if user and user.is_authenticated and user.is_staff:
            return True
        client = request_client(request)
        if client is None:
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        if not client.can_write:
            self.message = "This API client has read-only access."
            return False
        return True
