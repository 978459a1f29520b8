"""Idempotency keys for POST endpoints.

A view that mixes in ``IdempotentMixin`` honours the ``Idempotency-Key`` header on POST: the
first request with a key runs and its response is stored; a repeat gets that response back
(with ``Idempotent-Replayed: true``) without running again; the same key with another body
gets 422; the same key while the first request runs gets 409. Keys expire after
``IDEMPOTENCY_KEY_TTL_HOURS``.
"""

import hashlib
import json

from drf_spectacular.utils import OpenApiParameter
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from omni.api.permissions import request_source
from omni.services import idempotency_claim, idempotency_complete

HEADER = "Idempotency-Key"

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "A unique key for this request (for example a UUID). Repeating the request with the "
        "same key returns the first response without doing the work again; the same key with "
        "a different body is refused with 422, and while the first request is still running "
        "with 409. Keys expire after 24 hours."
    ),
)


class _Replay(Exception):
    def __init__(self, record):
        self.record = record


class IdempotentMixin:
    idempotent_methods = ("POST",)

    def initial(self, request, *args, **kwargs):
        self._idempotency_record = None
        super().initial(request, *args, **kwargs)
        if request.method not in self.idempotent_methods:
            return  # before the header: ``request.headers`` copies every header, every time
        key = request.headers.get(HEADER)
        if key is None:
            return
        body = request._request.body
        fingerprint = hashlib.sha256(b"%s\n%s" % (request.content_type.encode(), body)).hexdigest()
        claim = idempotency_claim(
            principal=request_source(request),
            key=key,
            method=request.method,
            # Routes match with and without the trailing slash: one key, one path.
            path=request.path.rstrip("/") + "/",
            fingerprint=fingerprint,
        )
        if claim.replay is not None:
            raise _Replay(claim.replay)
        self._idempotency_record = claim.record

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            return Response(
                exc.record.response_body,
                status=exc.record.response_status,
                headers={"Idempotent-Replayed": "true"},
            )
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(self, "_idempotency_record", None)
        if record is not None:
            self._idempotency_record = None
            data = getattr(response, "data", None)
            body = json.loads(JSONRenderer().render(data)) if data is not None else None
            idempotency_complete(record=record, status=response.status_code, body=body)
        return response
