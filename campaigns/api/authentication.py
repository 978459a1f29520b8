"""The delivery-receipt webhook is called by the SMS/push/social gateway, not by an API client:
it is authenticated by the gateway's signature over the raw body (see
``campaigns.services.receipts``), never by a token or a session."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from campaigns.services.receipts import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    receipt_signature_problem,
)


class InvalidSignature(exceptions.APIException):
    """403 ``invalid_signature``: unsigned, wrongly signed, or signed too long ago."""

    status_code = 403
    default_code = "invalid_signature"
    default_detail = "The request is not signed by the gateway."


class GatewayCaller:
    """The ``request.user`` of a request the gateway signed."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True
    pk = None
    id = None
    username = "gateway"

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm, obj=None) -> bool:
        return False


GATEWAY = "gateway"


class GatewaySignatureAuthentication(authentication.BaseAuthentication):
    """``X-Omni-Timestamp`` and ``X-Omni-Signature`` over the raw body, or 403."""

    def authenticate(self, request):
        raw = request._request
        problem = receipt_signature_problem(
            body=raw.body,
            timestamp=raw.META.get("HTTP_X_OMNI_TIMESTAMP"),
            signature=raw.META.get("HTTP_X_OMNI_SIGNATURE"),
        )
        if problem is not None:
            raise InvalidSignature(problem)
        return GatewayCaller(), GATEWAY


class IsGateway(permissions.BasePermission):
    message = "Only the gateway may post receipts."

    def has_permission(self, request, view) -> bool:
        return request.auth == GATEWAY


class GatewaySignatureScheme(OpenApiAuthenticationExtension):
    target_class = "campaigns.api.authentication.GatewaySignatureAuthentication"
    name = "GatewaySignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": SIGNATURE_HEADER,
            "description": f"`sha256=<hex>`: the HMAC-SHA256 of `<{TIMESTAMP_HEADER}>.<raw body>` "
            f"keyed with the gateway secret (`OMNI_GATEWAY_SECRET`); `{TIMESTAMP_HEADER}` is the "
            "Unix time in seconds, within `OMNI_GATEWAY_RECEIPT_TOLERANCE_SECONDS` (default 300) "
            "of the server's clock.",
        }
