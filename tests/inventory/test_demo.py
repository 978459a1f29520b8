"""The demo loader's inventory: stores and a warehouse with stock whose ledger adds up, rules on
the channels, a count with discrepancies waiting for review, a requested count, a transfer in
transit, and availability for the web shop. Running it again adds no duplicates."""

import io

import pytest
from django.core.management import call_command
from django.db.models import IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce

from catalog.models import Variant
from inventory.models import (
    ChannelAvailability,
    ChannelStockPolicy,
    ChannelStockRule,
    CountTolerance,
    Discrepancy,
    Location,
    ReconciliationRun,
    ReorderRule,
    Reservation,
    StockCount,
    StockLevel,
    StockMovement,
    Transfer,
)

pytestmark = pytest.mark.django_db


def load(*args):
    out = io.StringIO()
    call_command("load_demo", "--products", "40", *args, stdout=out)
    return out.getvalue()


def ledger_mismatches():
    ledger = (
        StockMovement.objects.filter(
            location_id=OuterRef("location_id"), variant_id=OuterRef("variant_id")
        )
        .order_by()
        .values("location_id")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    held = (
        Reservation.objects.filter(
            location_id=OuterRef("location_id"),
            variant_id=OuterRef("variant_id"),
            status="active",
        )
        .order_by()
        .values("location_id")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    rows = StockLevel.objects.annotate(
        ledger_sum=Coalesce(Subquery(ledger, output_field=IntegerField()), 0),
        held_sum=Coalesce(Subquery(held, output_field=IntegerField()), 0),
    )
    return [
        (row.location_id, row.variant_id, row.on_hand, row.ledger_sum, row.reserved, row.held_sum)
        for row in rows
        if row.on_hand != row.ledger_sum or row.reserved != row.held_sum
    ]


@pytest.fixture
def demo(db):
    return load()


def test_demo_output_names_what_it_loaded(demo):
    assert "Demo catalog loaded" in demo
    assert "Demo inventory loaded" in demo
    assert "4 locations" in demo


def test_demo_locations_are_three_stores_and_a_warehouse(demo):
    locations = {
        loc.code: (loc.kind, loc.city, loc.time_zone, loc.latitude is not None)
        for loc in Location.objects.all()
    }

    assert locations == {
        "wh-orleans": ("warehouse", "Saran", "Europe/Paris", True),
        "paris-rivoli": ("store", "Paris", "Europe/Paris", True),
        "lyon-part-dieu": ("store", "Lyon", "Europe/Paris", True),
        "marseille-vieux-port": ("store", "Marseille", "Europe/Paris", True),
    }


def test_every_demo_variant_has_stock_and_the_ledger_adds_up(demo):
    assert ledger_mismatches() == []
    assert not Variant.objects.exclude(pk__in=StockLevel.objects.values("variant_id")).exists()
    assert StockLevel.objects.filter(on_hand=0).exists()
    assert StockLevel.objects.filter(on_hand__in=[1, 2]).exists()
    assert StockMovement.objects.filter(kind="sale").exists()


def test_demo_channels_have_their_rules(demo):
    marketplace = ChannelStockPolicy.objects.get(channel__code="marketplace")
    web_rules = list(
        ChannelStockRule.objects.filter(channel__code="web")
        .order_by("priority")
        .values_list("location__code", flat=True)
    )

    assert (marketplace.exposed_percent, marketplace.buffer, marketplace.cap) == (80, 2, 50)
    assert web_rules[0] == "wh-orleans"
    assert set(web_rules[1:]) == {"paris-rivoli", "lyon-part-dieu", "marseille-vieux-port"}
    assert set(ChannelStockPolicy.objects.values_list("channel__code", flat=True)) == {
        "web",
        "app",
        "marketplace",
        "social-shop",
    }
    general = CountTolerance.objects.get(location=None)
    assert (general.max_units, str(general.max_percent)) == (2, "5.00")


def test_demo_leaves_discrepancies_to_review_and_work_in_progress(demo):
    run = ReconciliationRun.objects.get()
    pending = Discrepancy.objects.filter(status="pending")

    assert (run.status, run.trigger) == ("succeeded", "demo")
    # The demo data is seeded: the Lyon count always finds the same twelve differences.
    assert (run.counts_processed, run.lines_compared, run.discrepancies_found) == (1, 24, 12)
    assert run.pending_review == pending.count() == 6
    assert run.auto_applied == 6
    assert set(pending.values_list("location__code", flat=True)) == {"lyon-part-dieu"}
    assert StockCount.objects.filter(
        location__code="marseille-vieux-port", status="requested"
    ).exists()
    # The replenishment in transit (the demo orders add a transfer for a pickup; see orders).
    transfer = Transfer.objects.get(reference="DEMO-REPLENISHMENT")
    assert (transfer.status, transfer.from_location.code, transfer.to_location.code) == (
        "shipped",
        "wh-orleans",
        "paris-rivoli",
    )
    assert ReorderRule.objects.count() == 36


def test_demo_availability_exists_for_the_web(demo):
    web = ChannelAvailability.objects.filter(channel__code="web")

    assert web.count() == web.filter(quantity__gt=0).count() == 173
    assert web.filter(is_low_stock=True).count() == 4
    # The marketplace sees at most 80% of the warehouse, capped at 50.
    assert not ChannelAvailability.objects.filter(
        channel__code="marketplace", quantity__gt=50
    ).exists()


def test_loading_again_with_force_stocks_the_new_variants_only(demo):
    before = {
        "locations": Location.objects.count(),
        "rules": ChannelStockRule.objects.count(),
        "transfers": Transfer.objects.count(),
        "counts": StockCount.objects.count(),
        "stock": StockLevel.objects.count(),
    }

    output = load("--force")

    assert "Demo inventory loaded" in output
    assert Location.objects.count() == before["locations"]
    assert ChannelStockRule.objects.count() == before["rules"]
    assert Transfer.objects.count() == before["transfers"]
    assert StockCount.objects.count() == before["counts"]
    # The 40 new products' variants got their 586 stock rows; the first load's 565 stayed.
    assert before["stock"] == 565
    assert StockLevel.objects.count() == 565 + 586
    assert not Variant.objects.exclude(pk__in=StockLevel.objects.values("variant_id")).exists()
    assert ledger_mismatches() == []


def test_demo_is_skipped_when_loaded(demo):
    assert load().strip() == "Demo data already loaded; skipping."
