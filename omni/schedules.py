"""Scheduled tasks, declared in code and stored by django-celery-beat.

Each entry is created once (after ``migrate``) if no periodic task of that name exists, so
staff may pause, edit or run it from the admin and a deploy never overwrites their changes.
Later issues add their schedules to ``SCHEDULES``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    minute: str = "*"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    description: str = ""


SCHEDULES = [
    Schedule(
        name="Regenerate channel feeds",
        task="catalog.generate_feeds",
        minute="30",
        hour="2",
        description="Nightly: write every sales channel's feed file in its format.",
    ),
    Schedule(
        name="Reconcile stock",
        task="inventory.reconcile",
        minute="*/15",
        description="Counts against the ledger, expired holds, invariants, channel availability.",
    ),
    Schedule(
        name="Refresh channel availability",
        task="inventory.refresh_availability",
        minute="*/5",
        description="Recompute every variant's availability per sales channel (changed rows only).",
    ),
    Schedule(
        name="Suggest reorders",
        task="inventory.suggest_reorders",
        minute="0",
        hour="4",
        description="Nightly: sales velocity, reorder points, purchase and transfer proposals.",
    ),
    Schedule(
        name="Refresh segment counts",
        task="customers.refresh_segments",
        minute="10",
        description="Hourly: count the members of every customer segment for the admin list.",
    ),
    Schedule(
        name="Close abandoned carts",
        task="orders.abandon_carts",
        minute="40",
        hour="3",
        description="Nightly: open carts idle for OMNI_CART_ABANDON_DAYS close as abandoned.",
    ),
    Schedule(
        name="Detect campaign triggers",
        task="campaigns.detect_triggers",
        minute="*/5",
        description="Abandoned carts and views, store purchases, back in stock, pickups ready, "
        "win-back and broadcasts become enrolments (each once).",
    ),
    Schedule(
        name="Send campaign messages",
        task="campaigns.send_messages",
        description="Every minute: due steps become messages within the messaging rules; "
        "queued messages go to their backends; failures are retried with backoff.",
    ),
    Schedule(
        name="Refresh campaign rollups",
        task="campaigns.refresh_rollups",
        minute="20",
        description="Hourly: attribute orders to campaign messages; dashboard rollups.",
    ),
    Schedule(
        name="Purge expired idempotency keys",
        task="omni.purge_idempotency_keys",
        minute="15",
        hour="3",
        description="Nightly: delete idempotency keys older than their 24-hour lifetime.",
    ),
]


def ensure_periodic_tasks(sender=None, using="default", **kwargs) -> int:
    """Create the declared schedules that are missing. Returns how many were created."""
    from django.conf import settings
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    created = 0
    for entry in SCHEDULES:
        if PeriodicTask.objects.using(using).filter(name=entry.name).exists():
            continue
        crontab, _ = CrontabSchedule.objects.using(using).get_or_create(
            minute=entry.minute,
            hour=entry.hour,
            day_of_week=entry.day_of_week,
            day_of_month=entry.day_of_month,
            month_of_year=entry.month_of_year,
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.using(using).create(
            name=entry.name, task=entry.task, crontab=crontab, description=entry.description
        )
        created += 1
    return created
