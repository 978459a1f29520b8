"""The hot read path shared by the busiest API reads (the SKU lookup, a customer's timeline).

Most of their requests are the same: an API client's token, ``GET``, plain JSON, no options.
For those the view answers before DRF wraps the request (its request object, content
negotiation, authentication and permission classes cost as much as the query), with the same
body and headers; anything else (no or an unknown token, a session, another format, options,
a miss) goes DRF's way, which also gives the errors; what the hot path already learnt (the
token's client, a miss) is left on the request so that DRF's path does not ask again.
Revocation stays immediate: the client comes from the connection's token cache and is
confirmed after the view's query (``omni.api.token_cache``), as ``CachedTokenMixin`` does on
DRF's path.
"""

from django.http import HttpResponse

from omni.api import token_cache

ACCEPT_JSON = frozenset(("", "*/*", "application/json"))
TOKEN_KEYWORDS = frozenset(("token", "bearer"))


def hot_client(request, *, params=frozenset()):
    """``(client, unconfirmed)`` for a plain-JSON ``GET`` with an API client's token and no
    query parameters but ``params``; None when DRF's path must answer."""
    meta = request.META
    if (
        request.method != "GET"
        or meta.get("HTTP_ACCEPT", "") not in ACCEPT_JSON
        or any(key not in params for key in request.GET)
    ):
        return None
    header = meta.get("HTTP_AUTHORIZATION", "").split()
    if len(header) != 2 or header[0].lower() not in TOKEN_KEYWORDS:
        return None
    client, unconfirmed = token_cache.authenticate(header[1])
    # What the token turned out to be, for DRF's path if it has to answer: no second query.
    request.omni_token = (header[1], client, unconfirmed)
    if client is None:
        return None  # DRF's path answers 401
    return client, unconfirmed


def hot_response(view, request, body: bytes, unconfirmed) -> HttpResponse | None:
    """The response DRF would give for ``body``: JSON, with the view's default headers
    (``Allow``). None when the client was revoked meanwhile (DRF's path answers 401)."""
    if unconfirmed is not None and not token_cache.confirm(unconfirmed):
        token = request.omni_token[0]
        request.omni_token = (token, None, None)
        return None
    response = HttpResponse(body, content_type="application/json")
    for key, value in view.default_response_headers.items():
        response[key] = value
    return response
