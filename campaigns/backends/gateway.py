"""The HTTP gateway: SMS, push and social messages posted as signed JSON to one URL.

The gateway (a small service of ours or an SMS/push provider's adapter) receives, per message,
``POST <OMNI_GATEWAY_URL>`` with ``Content-Type: application/json`` and the body::

    {"id": 42, "channel": "sms", "kind": "sms", "to": "+33612345678", "subject": "",
     "text": "Your cart is waiting...", "metadata": {"campaign": 3, "step": 7, "customer": 9}}

and the headers

- ``Idempotency-Key: omni-message-42@omni.example.com`` (the message id at this installation's
  site host, so staging and production sharing a gateway never collide): the same on every
  attempt; the gateway must not send
  a message twice for one key (keep keys at least a day);
- ``X-Omni-Timestamp: 1718000000``: Unix time in seconds when the request was signed;
- ``X-Omni-Signature: sha256=<hex>``: HMAC-SHA256, keyed with ``OMNI_GATEWAY_SECRET`` (UTF-8),
  of the timestamp, a full stop and the raw body bytes: ``f"{timestamp}.".encode() + body``.

The gateway recomputes the signature over the body exactly as received, compares it in
constant time, and refuses a timestamp more than five minutes from its clock, so a captured
request cannot be replayed later (``verify_signature`` does all three).

Its answer: any 2xx accepts the message; a JSON object in the body may carry the provider's
``"id"`` (kept as the message's provider id) and ``"delivered": true`` when the gateway knows
the message reached the recipient. A 5xx, 408 or 429, a timeout or a refused connection is
retried within the same ``send`` (``OMNI_GATEWAY_RETRIES`` more attempts, waiting
``OMNI_GATEWAY_BACKOFF`` seconds, then twice as long each time) and then raised as a
``TransientDeliveryError``, which the send task retries later. Any other status (4xx, or a
3xx: redirects are not followed) is a ``PermanentDeliveryError`` at once.

Because the gateway dedupes on the key, the backend is idempotent: resending a message whose
outcome is unknown is safe. In ``send_many``, once a message still fails transiently after
every attempt (no HTTP answer, or a 5xx, 408 or 429 each time), the rest of the batch fails
with a transient error without being tried: the send task retries it later with backoff,
instead of spending the batch's time (and the gateway's patience) on more attempts.
"""

import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.request

from django.conf import settings

from campaigns.backends.base import (
    DeliveryBackend,
    DeliveryError,
    DeliveryResult,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)

SIGNATURE_HEADER = "X-Omni-Signature"
TIMESTAMP_HEADER = "X-Omni-Timestamp"
SIGNATURE_TOLERANCE_SECONDS = 300
# 4xx answers that mean "later", not "never".
RETRY_STATUSES = frozenset({408, 429})
# Answers about the gateway itself, not the message: the rest of a batch waits too.
BUSY_STATUSES = frozenset({429, 503})
MAX_RESPONSE_BYTES = 64 * 1024


def idempotency_key(message: OutgoingMessage) -> str:
    """The message's key at this installation (its id at the site's host, as in the email
    Message-ID): two installations sharing a gateway never dedupe each other's messages."""
    from campaigns.backends.email import message_id_domain

    return f"{message.idempotency_key}@{message_id_domain()}"


class GatewayUnreachable(TransientDeliveryError):
    """No HTTP answer from the gateway (refused connection, timeout, dropped connection)."""


class GatewayBusy(TransientDeliveryError):
    """The gateway asks to slow down or is unavailable (429, 503), still after the retries."""


def request_body(message: OutgoingMessage) -> bytes:
    """The JSON body posted for a message."""
    payload = {
        "id": message.message_id,
        "channel": message.channel_code,
        "kind": message.channel_kind,
        "to": message.to,
        "subject": message.subject,
        "text": message.text,
        "metadata": message.metadata,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Omni-Signature`` value of a body signed at ``timestamp`` (Unix seconds)."""
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    *,
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a gateway checks: the signature matches the raw body and the timestamp, and the
    timestamp is within ``tolerance`` seconds of ``now``."""
    try:
        signed_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - signed_at) > tolerance:
        return False
    return hmac.compare_digest(signature.encode(), sign(secret, timestamp, body).encode())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET: report the 3xx instead."""

    def redirect_request(self, *args, **kwargs):
        return None


class HttpGatewayBackend(DeliveryBackend):
    """Every argument left out is read from the ``OMNI_GATEWAY_*`` settings at each send."""

    idempotent = True

    def __init__(
        self,
        *,
        url: str | None = None,
        secret: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        backoff: float | None = None,
    ):
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        url = self.url or settings.OMNI_GATEWAY_URL
        secret = self.secret or settings.OMNI_GATEWAY_SECRET
        timeout = self.timeout if self.timeout is not None else settings.OMNI_GATEWAY_TIMEOUT
        retries = self.retries if self.retries is not None else settings.OMNI_GATEWAY_RETRIES
        backoff = self.backoff if self.backoff is not None else settings.OMNI_GATEWAY_BACKOFF
        body = request_body(message)
        error: TransientDeliveryError | None = None
        for attempt in range(max(retries, 0) + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                status, content = self._post(url, secret, timeout, body, message)
            except (OSError, http.client.HTTPException) as exc:
                error = GatewayUnreachable(
                    f"Gateway unreachable after {attempt + 1} attempt(s): {_reason(exc)}"
                )
                continue
            if 200 <= status < 300:
                return _result(content)
            answer = f"HTTP {status}: {content[:200].decode('utf-8', 'replace')}".strip()
            if status >= 500 or status in RETRY_STATUSES:
                kind = GatewayBusy if status in BUSY_STATUSES else TransientDeliveryError
                error = kind(f"Gateway failed after {attempt + 1} attempt(s): {answer}")
                continue
            raise PermanentDeliveryError(f"Gateway refused the message: {answer}")
        raise error

    def send_many(self, messages: list[OutgoingMessage]) -> list:
        results: list = []
        down: TransientDeliveryError | None = None
        for message in messages:
            if down is not None:
                results.append(GatewayUnreachable(f"Not tried: {down}"))
                continue
            try:
                results.append(self.send(message))
            except (GatewayUnreachable, GatewayBusy) as error:
                # The gateway itself is down or overloaded, still after the retries: the rest
                # of the batch waits for the next run rather than hammering it.
                down = error
                results.append(error)
            except DeliveryError as error:
                # This message's own failure (a 500 for it, a refusal): the next ones go on,
                # so that one message failing again and again does not hold up the others.
                results.append(error)
        return results

    def _post(self, url, secret, timeout, body, message) -> tuple[int, bytes]:
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "Omni-Gateway-Backend/1",
                "Idempotency-Key": idempotency_key(message),
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(secret, timestamp, body),
            },
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read(MAX_RESPONSE_BYTES)


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error.reason, str):
        error = error.reason
    return repr(error)


def _result(content: bytes) -> DeliveryResult:
    try:
        data = json.loads(content) if content.strip() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    provider_id = data.get("id")
    return DeliveryResult(
        provider_id="" if provider_id is None else str(provider_id)[:200],
        delivered=data.get("delivered") is True,
    )
