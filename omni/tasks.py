from celery import shared_task

from omni.services import idempotency_purge_expired, outbox_emit


@shared_task(name="omni.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    return idempotency_purge_expired()


@shared_task(name="omni.ping")
def ping(marker: str) -> str:
    """Round trip through the broker and a worker: records an ``omni.ping`` event."""
    outbox_emit(type="omni.ping", subject_type="worker", subject_id=marker)
    return marker
