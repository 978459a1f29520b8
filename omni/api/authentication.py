"""Token authentication for API clients created by staff in the admin."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from omni.services import api_client_authenticate


class ApiClientUser:
    """The ``request.user`` of a call made with an API client's token."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True
    pk = None
    id = None

    def __init__(self, client):
        self.client = client
        self.username = f"api-client:{client.name}"

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm, obj=None) -> bool:
        return False


class ApiClientTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token <token>`` (or ``Bearer <token>``) for an active API client."""

    keywords = (b"token", b"bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        # Compared as bytes: a header with non-UTF-8 bytes is someone else's scheme, not a 500.
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Token <token>'."
            )
        try:
            token = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token characters.") from exc
        client = api_client_authenticate(token)
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        return ApiClientUser(client), client

    def authenticate_header(self, request):
        return 'Token realm="api"'


class ApiClientTokenScheme(OpenApiAuthenticationExtension):
    target_class = "omni.api.authentication.ApiClientTokenAuthentication"
    name = "ApiClientToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <token>` of an API client created in the admin.",
        }
