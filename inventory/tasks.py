"""Scheduled inventory work. Each task calls one service and is idempotent (safe with
``acks_late`` and when run twice); transient database errors are retried with backoff."""

from celery import shared_task
from django.db import OperationalError

from inventory.services import availability_refresh, reorder_suggest, stock_reconcile

RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": True, "max_retries": 3}


@shared_task(name="inventory.reconcile", acks_late=True, **RETRY)
def reconcile() -> dict:
    run = stock_reconcile(trigger="schedule")
    return {"run": run.pk, "status": run.status, "discrepancies": run.discrepancies_found}


@shared_task(name="inventory.refresh_availability", acks_late=True, **RETRY)
def refresh_availability(variant_ids: list[int] | None = None) -> dict:
    result = availability_refresh(variant_ids=variant_ids)
    return {"variants": result.variants, "rows_written": result.rows_written}


@shared_task(name="inventory.suggest_reorders", acks_late=True, **RETRY)
def suggest_reorders() -> dict:
    result = reorder_suggest()
    return {"rules": result.rules, "proposed": result.proposed, "updated": result.updated}
