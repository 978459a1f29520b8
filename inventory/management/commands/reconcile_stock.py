from django.core.management.base import BaseCommand

from inventory.services import stock_reconcile


class Command(BaseCommand):
    help = "Run a stock reconciliation now (what the 15-minute schedule runs), with progress."

    def handle(self, *args, **options):
        run = stock_reconcile(
            trigger="command", progress=lambda message: self.stderr.write(f"… {message}")
        )
        figures = [
            ("counts processed", run.counts_processed),
            ("lines compared", run.lines_compared),
            ("discrepancies", run.discrepancies_found),
            ("applied within tolerance", run.auto_applied),
            ("waiting for review", run.pending_review),
            ("expired holds released", run.reservations_expired),
            ("reservation units moved", run.reservations_resourced),
            ("reservations flagged", run.reservations_flagged),
            ("on-hand drift repaired", run.on_hand_drift_repaired),
            ("reserved drift repaired", run.reserved_drift_repaired),
            ("availability rows updated", run.availability_updated),
        ]
        elapsed = (run.finished_at - run.started_at).total_seconds()
        self.stdout.write(
            self.style.SUCCESS(f"Reconciliation #{run.pk} {run.status} in {elapsed:.1f} s")
        )
        for label, value in figures:
            self.stdout.write(f"  {label:<28} {value:>10,}")
