"""Token authentication for API clients created by staff in the admin."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import HTTP_HEADER_ENCODING, authentication, exceptions

from omni.api import token_cache
from omni.services import api_client_authenticate

REVOKED = "Invalid or revoked API token."
# Read-only methods: a request whose cached client turns out revoked after the view ran has
# done nothing that its 401 cannot take back.
CACHED_METHODS = ("GET", "HEAD")


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
        # As DRF's get_authorization_header, from META: request.headers would copy them all.
        header = request.META.get("HTTP_AUTHORIZATION", b"")
        if isinstance(header, str):
            header = header.encode(HTTP_HEADER_ENCODING)
        header = header.split()
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
        view = (request.parser_context or {}).get("view")
        known = getattr(request._request, "omni_token", None)  # the hot path's (omni.api.hot)
        if known is not None and known[0] == token:
            _token, client, unconfirmed = known
            request.api_token_unconfirmed = unconfirmed
        elif request.method in CACHED_METHODS and isinstance(view, CachedTokenMixin):
            client, unconfirmed = token_cache.authenticate(token)
            request.api_token_unconfirmed = unconfirmed
        else:
            client = api_client_authenticate(token)
        if client is None:
            raise exceptions.AuthenticationFailed(REVOKED)
        return ApiClientUser(client), client

    def authenticate_header(self, request):
        return 'Token realm="api"'


class CachedTokenMixin:
    """For API views that read: their GET and HEAD requests may take the API client from the
    connection's token cache (``omni.api.token_cache``) instead of querying for it.

    Revocation stays immediate: once the view has run (and its queries have brought in the
    database's notifications), a client that was deactivated or given a new token before the
    request started is found out and the request gets 401 instead. So every path of the view
    that returns data must query the database.
    """

    def finalize_response(self, request, response, *args, **kwargs):
        unconfirmed = request.__dict__.pop("api_token_unconfirmed", None)
        if unconfirmed is not None and not token_cache.confirm(unconfirmed):
            response = self.handle_exception(exceptions.AuthenticationFailed(REVOKED))
        return super().finalize_response(request, response, *args, **kwargs)


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
