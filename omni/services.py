"""Core services: API client tokens, the domain event outbox and idempotency keys."""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .db import PreparedQuery
from .exceptions import Conflict, Unprocessable, ValidationFailed
from .models import ApiClient, IdempotencyKey, IdempotencyStatus, OutboxEvent

TOKEN_PREFIX_LEN = 8
# ``last_used_at`` is recorded at most this often per client: a write per request would double
# the cost of every read.
LAST_USED_RESOLUTION = timedelta(minutes=5)
# A request still "in progress" after this long is taken to have crashed; its key may be reused.
IDEMPOTENCY_LOCK_SECONDS = 300


# --- API clients ------------------------------------------------------------------------------


def _new_token() -> tuple[str, str]:
    prefix = secrets.token_hex(TOKEN_PREFIX_LEN // 2)
    return prefix, f"omni_{prefix}_{secrets.token_urlsafe(32)}"


@transaction.atomic
def api_client_issue_token(*, client: ApiClient) -> str:
    """Give ``client`` a new token (replacing any old one) and return it; it is never stored."""
    prefix, token = _new_token()
    client.token_prefix = prefix
    client.token_hash = ApiClient.hash_token(token)
    client.token_issued_at = timezone.now()
    client.save(update_fields=["token_prefix", "token_hash", "token_issued_at"])
    return token


@transaction.atomic
def api_client_create(*, name: str, access: str, channel=None, created_by=None) -> tuple:
    """Create an API client and return ``(client, token)``. The token is shown once."""
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("An API client needs a name.", extra={"name": ["Required."]})
    if ApiClient.objects.filter(name=name).exists():
        raise ValidationFailed(
            f"An API client named {name!r} exists already.",
            extra={"name": ["An API client with this name exists already."]},
        )
    prefix, token = _new_token()
    client = ApiClient.objects.create(
        name=name,
        access=access,
        channel=channel,
        created_by=created_by,
        token_prefix=prefix,
        token_hash=ApiClient.hash_token(token),
        token_issued_at=timezone.now(),
    )
    return client, token


CLIENT_AUTH_FIELDS = [
    "id",
    "name",
    "channel_id",
    "access",
    "is_active",
    "token_prefix",
    "token_hash",
    "last_used_at",
]
_client_by_prefix = PreparedQuery(
    lambda prefix: ApiClient.objects.filter(token_prefix=prefix, is_active=True).values_list(
        *CLIENT_AUTH_FIELDS
    )
)


def api_client_authenticate(token: str) -> ApiClient | None:
    """The active client whose token this is, or None: one indexed query, prepared once per
    connection, so a deactivated client or a reissued token stops working at once. (Read-only
    API views put a cache with the same guarantee in front of this: ``omni.api.token_cache``.)
    """
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "omni":
        return None
    found = _client_by_prefix.rows(parts[1])
    if not found:
        return None
    # Fields not read here are deferred: they load on first access, like any model instance.
    client = ApiClient.from_db("default", CLIENT_AUTH_FIELDS, found[0])
    if not secrets.compare_digest(client.token_hash, ApiClient.hash_token(token)):
        return None
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
    return client


# --- Outbox -----------------------------------------------------------------------------------


def outbox_emit(*, type: str, subject_type: str, subject_id, payload: dict | None = None):
    """Record a domain event in the caller's transaction."""
    return OutboxEvent.objects.create(
        type=type,
        subject_type=subject_type,
        subject_id=str(subject_id),
        payload=payload or {},
        occurred_at=timezone.now(),
    )


def outbox_emit_many(events: list[dict]) -> int:
    """Record many domain events at once (set-based writers)."""
    now = timezone.now()
    rows = [
        OutboxEvent(
            type=e["type"],
            subject_type=e["subject_type"],
            subject_id=str(e["subject_id"]),
            payload=e.get("payload") or {},
            occurred_at=now,
        )
        for e in events
    ]
    OutboxEvent.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


# --- Idempotency keys -------------------------------------------------------------------------


@dataclass
class IdempotencyClaim:
    """Either ``record`` (this request owns the key and must complete it) or ``replay``."""

    record: IdempotencyKey | None = None
    replay: IdempotencyKey | None = None


def idempotency_claim(
    *, principal: str, key: str, method: str, path: str, fingerprint: str
) -> IdempotencyClaim:
    """Claim ``key`` for this request, or say why not.

    Returns a claim owning a fresh in-progress row, or one holding the completed row to replay.
    Raises ``Unprocessable`` when the key was used for a different request and ``Conflict``
    while the first request with the key is still running. The row is committed at once (its
    own transaction), so a concurrent request with the same key sees it.
    """
    if not key or len(key) > 255:
        raise ValidationFailed(
            "The Idempotency-Key header must be 1 to 255 characters.",
            extra={"Idempotency-Key": ["Must be 1 to 255 characters."]},
        )
    now = timezone.now()
    ttl = timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    for _attempt in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    principal=principal,
                    key=key,
                    method=method,
                    path=path,
                    fingerprint=fingerprint,
                    status=IdempotencyStatus.IN_PROGRESS,
                    created_at=now,
                    locked_until=now + timedelta(seconds=IDEMPOTENCY_LOCK_SECONDS),
                    expires_at=now + ttl,
                )
            return IdempotencyClaim(record=record)
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(principal=principal, key=key).first()
        if existing is None:
            continue  # deleted in between (expired or abandoned): try to claim again
        stale = existing.status == IdempotencyStatus.IN_PROGRESS and existing.locked_until < now
        if existing.expires_at <= now or stale:
            IdempotencyKey.objects.filter(pk=existing.pk, expires_at=existing.expires_at).delete()
            continue
        if (existing.method, existing.path, existing.fingerprint) != (method, path, fingerprint):
            raise Unprocessable(
                "This Idempotency-Key was already used for a different request.",
                code="idempotency_key_reused",
                extra={"key": key},
            )
        if existing.status == IdempotencyStatus.IN_PROGRESS:
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry later.",
                code="idempotency_in_progress",
                extra={"key": key},
            )
        return IdempotencyClaim(replay=existing)
    raise Conflict(
        "Could not claim this Idempotency-Key; retry later.",
        code="idempotency_in_progress",
        extra={"key": key},
    )


def idempotency_complete(*, record: IdempotencyKey, status: int, body) -> None:
    """Store the response of the request that owns ``record``.

    Server errors and conflicts (409: the request clashed with a concurrent change and did
    nothing) are not stored: the key is released so the client can retry.
    """
    if status >= 500 or status == 409:
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        return
    IdempotencyKey.objects.filter(pk=record.pk).update(
        status=IdempotencyStatus.COMPLETED, response_status=status, response_body=body
    )


def idempotency_purge_expired() -> int:
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
