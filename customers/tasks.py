"""Scheduled customer work; each task calls one service and is idempotent."""

from celery import shared_task
from django.db import OperationalError

from customers.services import segment_count_refresh

RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": True, "max_retries": 3}


@shared_task(name="customers.refresh_segments", acks_late=True, **RETRY)
def refresh_segments(segment_ids: list[int] | None = None) -> dict:
    return {"segments": segment_count_refresh(segment_ids=segment_ids)}
