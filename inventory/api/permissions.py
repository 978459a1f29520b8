from omni.api.permissions import IsStaffOrApiClient, request_client


class IsStaffOrApiClientReading(IsStaffOrApiClient):
    """For a POST that only reads (its input is too long for a query string): every API client
    may call it, read-only ones included, as well as staff."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if user and user.is_authenticated and user.is_staff:
            return True
        return request_client(request) is not None
