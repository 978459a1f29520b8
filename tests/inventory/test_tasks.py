"""The scheduled inventory tasks: each runs its service and returns its figures."""

import pytest
from django.db import OperationalError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from inventory import tasks
from inventory.models import (
    ChannelAvailability,
    ReconciliationRun,
    ReorderRule,
    ReplenishmentSuggestion,
    StockLevel,
)
from inventory.services import stock_count_submit
from omni.celery import app
from omni.schedules import SCHEDULES, ensure_periodic_tasks

pytestmark = pytest.mark.django_db

INVENTORY_TASKS = {
    "inventory.reconcile": tasks.reconcile,
    "inventory.refresh_availability": tasks.refresh_availability,
    "inventory.suggest_reorders": tasks.suggest_reorders,
}


def test_the_tasks_have_stable_names_and_are_registered():
    for name, task in INVENTORY_TASKS.items():
        assert task.name == name
        assert app.tasks[name].name == name
        assert task.acks_late is True
        assert task.max_retries == 3
        assert task.autoretry_for == (OperationalError,)


def test_reconcile_runs_a_reconciliation(stores, variant, receive):
    north = stores[1]
    receive(north, variant, 5)
    stock_count_submit(
        location=north,
        counted_at=timezone.now(),
        lines=[{"sku": variant.sku, "quantity": 0}],
    )

    result = tasks.reconcile.delay()

    run = ReconciliationRun.objects.get()
    assert result.get() == {"run": run.pk, "status": "succeeded", "discrepancies": 1}
    assert (run.trigger, run.counts_processed, run.pending_review) == ("schedule", 1, 1)


def test_refresh_availability_refreshes_the_given_variants_or_all(stores, variant, web, receive):
    north = stores[1]
    receive(north, variant, 5)
    ChannelAvailability.objects.all().delete()

    assert tasks.refresh_availability.delay(variant_ids=[variant.pk]).get() == {
        "variants": 1,
        "rows_written": 1,
    }
    assert ChannelAvailability.objects.get(variant=variant, channel=web).quantity == 5

    StockLevel.objects.filter(location=north, variant=variant).update(on_hand=7)
    everything = tasks.refresh_availability.delay().get()

    assert everything == {"variants": 1, "rows_written": 1}
    assert ChannelAvailability.objects.get(variant=variant, channel=web).quantity == 7
    assert tasks.refresh_availability.delay().get()["rows_written"] == 0


def test_suggest_reorders_proposes_and_reports(stores, variant):
    ReorderRule.objects.create(location=stores[1], variant=variant, min_quantity=2, max_quantity=10)

    assert tasks.suggest_reorders.delay().get() == {"rules": 1, "proposed": 1, "updated": 0}
    assert ReplenishmentSuggestion.objects.get().quantity == 10
    assert tasks.suggest_reorders.delay().get() == {"rules": 1, "proposed": 0, "updated": 0}


def test_the_schedules_include_the_inventory_tasks():
    by_task = {entry.task: entry for entry in SCHEDULES}

    assert (by_task["inventory.reconcile"].minute, by_task["inventory.reconcile"].hour) == (
        "*/15",
        "*",
    )
    assert (
        by_task["inventory.refresh_availability"].minute,
        by_task["inventory.refresh_availability"].hour,
    ) == ("*/5", "*")
    assert (
        by_task["inventory.suggest_reorders"].minute,
        by_task["inventory.suggest_reorders"].hour,
    ) == ("0", "4")


def test_the_schedules_are_stored_for_the_beat_scheduler():
    ensure_periodic_tasks()

    stored = {
        task.task: (task.crontab.minute, task.crontab.hour, task.enabled)
        for task in PeriodicTask.objects.filter(task__startswith="inventory.")
    }
    assert stored == {
        "inventory.reconcile": ("*/15", "*", True),
        "inventory.refresh_availability": ("*/5", "*", True),
        "inventory.suggest_reorders": ("0", "4", True),
    }
    assert ensure_periodic_tasks() == 0  # a second pass adds nothing
