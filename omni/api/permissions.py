from rest_framework import permissions

from omni.models import ApiClient


def request_client(request) -> ApiClient | None:
    return request.auth if isinstance(request.auth, ApiClient) else None


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
