import time

from django.core.management.base import BaseCommand
from django.db import transaction

from campaigns.demo import generate_campaigns
from catalog.demo import generate_catalog
from catalog.models import Product
from customers.demo import generate_customers
from inventory.demo import generate_inventory
from omni.models import Channel
from orders.demo import generate_orders


class Command(BaseCommand):
    help = (
        "Load the demo catalog, inventory, customers and orders once (skipped when the catalog "
        "already has products; --force adds more products and stocks them)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--products", type=int, default=300)
        parser.add_argument("--force", action="store_true", help="Load even if products exist.")

    def handle(self, *args, products, force, **options):
        if Product.objects.exists() and not force:
            self.stdout.write("Demo data already loaded; skipping.")
            return
        started = time.monotonic()
        self.stdout.write(
            f"Loading the demo catalog: {products} products on "
            f"{Channel.objects.sales().active().count()} sales channels..."
        )

        def progress(stage, count):
            self.stdout.write(f"  {stage}: {count}")

        last = (
            Product.objects.filter(handle__regex=r"^p[0-9]{6}-")
            .order_by("-handle")
            .values_list("handle", flat=True)
            .first()
        )
        start = int(last[1:7]) + 1 if last else 0
        # One transaction: a failure leaves no half-loaded demo behind, and the next start
        # loads it again.
        with transaction.atomic():
            counts = generate_catalog(products=products, progress=progress, start=start)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo catalog loaded in {time.monotonic() - started:.1f}s: "
                    f"{counts['products']} products, {counts['variants']} variants, "
                    f"{counts['listings']} channel listings."
                )
            )
            started = time.monotonic()
            stock = generate_inventory(progress=progress)
            inventory_seconds = time.monotonic() - started
            started_customers = time.monotonic()
            people = generate_customers(progress=progress)
            customers_seconds = time.monotonic() - started_customers
            started_orders = time.monotonic()
            sales = generate_orders(progress=progress)
            orders_seconds = time.monotonic() - started_orders
            started_campaigns = time.monotonic()
            follow_ups = generate_campaigns(progress=progress)
            campaigns_seconds = time.monotonic() - started_campaigns
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo inventory loaded in {inventory_seconds:.1f}s: "
                f"{stock['locations']} locations, {stock['stock_rows']} stock rows, "
                f"{stock['movements']} ledger lines, {stock['pending_review']} count "
                f"discrepancies waiting for review, {stock['suggestions']} reorder suggestions."
            )
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo customers loaded in {customers_seconds:.1f}s: "
                f"{people['customers']} customers, {people['touchpoints']} touchpoints, "
                f"{people['merges']} merged pair of profiles, consents, a conversation and "
                "three segments."
            )
        )
        if sales.get("skipped"):
            self.stdout.write("Demo orders: skipped (orders exist, or the demo shop is missing).")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo orders loaded in {orders_seconds:.1f}s: "
                f"{sales['orders']} orders on every sales channel, "
                f"{sales['pickups_waiting']} pickups waiting at {sales['store']} "
                f"({sales['awaiting_transfer']} waits for a transfer), {sales['returns']} return, "
                f"{sales['open_carts']} open cart; store staff user {sales['staff']!r} works at "
                f"{sales['store']}."
            )
        )
        if follow_ups.get("skipped"):
            self.stdout.write("Demo campaigns: skipped (campaigns exist, or channels are missing).")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo campaigns loaded in {campaigns_seconds:.1f}s: "
                f"{follow_ups['campaigns']} active campaigns (abandoned cart, pickup ready, back "
                f"in stock, thank-you), {follow_ups['templates']} templates, "
                f"{follow_ups['idle_carts']} carts left two hours ago, "
                f"{follow_ups['subscriptions']} back-in-stock subscriptions; the worker sends "
                "the first messages to var/outbox within minutes."
            )
        )
