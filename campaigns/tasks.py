"""Scheduled campaign work; each task calls one service and is idempotent."""

from celery import shared_task
from django.db import OperationalError

RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": True, "max_retries": 3}


@shared_task(name="campaigns.detect_triggers", acks_late=True, **RETRY)
def detect_triggers() -> dict:
    """Every 5 minutes: new enrolments for every running campaign; then send what is due."""
    from campaigns.services.detection import triggers_detect
    from campaigns.services.sending import send_soon

    result = triggers_detect()
    if result.total:
        send_soon()
    return {"campaigns": result.campaigns, "enrolled": result.enrolled}


@shared_task(name="campaigns.send_messages", acks_late=True, **RETRY)
def send_messages() -> dict:
    """Every minute and on demand: due steps to messages, messages to their backends."""
    from campaigns.services.sending import messages_send

    result = messages_send().as_dict()
    if result["sent"] + result["delivered"] and _rollups_stale():
        refresh_rollups.delay()  # the dashboards show what just went out
    return result


def _rollups_stale() -> bool:
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from campaigns.services.rollups import rollups_last_refreshed_at

    last = rollups_last_refreshed_at()
    every = timedelta(minutes=settings.OMNI_ROLLUPS_AFTER_SEND_MINUTES)
    return last is None or last < timezone.now() - every


@shared_task(name="campaigns.refresh_rollups", acks_late=True, **RETRY)
def refresh_rollups() -> dict:
    """Hourly: attribute orders to campaign messages, then the dashboard rollups."""
    from campaigns.services.rollups import campaign_figures_refresh

    figures = campaign_figures_refresh()
    return {"attributed": figures.pop("attributed"), "rollups": figures}
