"""Scheduled order work; each task calls one service and is idempotent."""

from celery import shared_task
from django.db import OperationalError

from orders.services import carts_abandon

RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": True, "max_retries": 3}


@shared_task(name="orders.abandon_carts", acks_late=True, **RETRY)
def abandon_carts() -> dict:
    total = 0
    while count := carts_abandon():
        total += count
    return {"abandoned": total}
