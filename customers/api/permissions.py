"""Who may call the customers API beyond the common rule (``IsStaffOrApiClient``)."""

from omni.api.permissions import IsStaffOrApiClient, request_client

PERSONAL_DATA_NEEDS_WRITE = "Exporting or erasing personal data needs write access."


class IsStaffOrWriteClient(IsStaffOrApiClient):
    """Personal data leaves only for staff and API clients with write access, whatever the
    method: the common rule, and a read-only client refused even for a GET."""

    def has_permission(self, request, view) -> bool:
        allowed = super().has_permission(request, view)
        client = request_client(request)
        if client is not None and not client.can_write:
            self.message = PERSONAL_DATA_NEEDS_WRITE
            return False
        return allowed
