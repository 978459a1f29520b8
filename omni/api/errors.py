"""One JSON error shape for every API error: ``{"code", "message", "details"}``."""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404, JsonResponse
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from omni.exceptions import OmniError

logger = logging.getLogger("omni.api")

DRF_CODES = {
    exceptions.ValidationError: ("validation_error", "The request has invalid fields."),
    exceptions.ParseError: ("parse_error", None),
    exceptions.AuthenticationFailed: ("authentication_failed", None),
    exceptions.NotAuthenticated: ("not_authenticated", None),
    exceptions.PermissionDenied: ("permission_denied", None),
    exceptions.NotFound: ("not_found", None),
    exceptions.MethodNotAllowed: ("method_not_allowed", None),
    exceptions.NotAcceptable: ("not_acceptable", None),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", None),
    exceptions.Throttled: ("throttled", None),
}

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "code": serializers.CharField(help_text="Stable machine-readable error code."),
        "message": serializers.CharField(help_text="What was wrong, for people."),
        "details": serializers.JSONField(help_text="Field or row errors and other details."),
    },
)

# Error responses as views declare them in the OpenAPI schema.
READ_ERRORS = {401: ErrorSerializer, 403: ErrorSerializer}
LIST_ERRORS = {400: ErrorSerializer, **READ_ERRORS}
WRITE_ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer}
NOT_FOUND = {404: ErrorSerializer}
IDEMPOTENCY_ERRORS = {409: ErrorSerializer, 422: ErrorSerializer}


def error_body(code: str, message: str, details=None) -> dict:
    return {"code": code, "message": message, "details": details or {}}


def _django_validation_details(exc: DjangoValidationError):
    if hasattr(exc, "error_dict"):
        return {k: [str(m) for e in v for m in e.messages] for k, v in exc.error_dict.items()}
    return {"non_field_errors": exc.messages}


def exception_handler(exc, context):
    set_rollback()
    if isinstance(exc, OmniError):
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body(
                "request_too_large",
                f"The request body is larger than {limit:,} bytes; send it in smaller parts.",
                {"max_bytes": limit},
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DjangoValidationError):
        details = _django_validation_details(exc)
        return Response(
            error_body("validation_error", "The request has invalid fields.", details),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, IntegrityError):
        # The database refused a write that a concurrent request made invalid (two creates of
        # one handle or SKU at once). The service's transaction rolled back, so nothing
        # changed and the client may retry.
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        logger.warning("Integrity error in the API (constraint %s): %s", constraint, exc)
        return Response(
            error_body(
                "conflict",
                "The request conflicts with a concurrent change; retry it.",
                {"constraint": constraint} if constraint else None,
            ),
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)

    if isinstance(exc, exceptions.APIException):
        code, message = exc.default_code, None
        for cls, (mapped, fixed) in DRF_CODES.items():
            if isinstance(exc, cls):
                code, message = mapped, fixed
                break
        if isinstance(exc, exceptions.ValidationError):
            details = (
                exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            )
        else:
            message = str(exc.detail)
            details = {}
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return Response(
            error_body(code, message or str(exc.detail), details),
            status=exc.status_code,
            headers=headers,
        )

    logger.exception("Unhandled error in the API", exc_info=exc)
    return Response(
        error_body("server_error", "An unexpected error occurred; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def api_not_found(request, exception=None):
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)


def api_server_error(request):
    return JsonResponse(
        error_body("server_error", "An unexpected error occurred; it has been logged."),
        status=500,
    )
