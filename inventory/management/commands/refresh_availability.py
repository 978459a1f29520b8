from django.core.management.base import BaseCommand

from inventory.services import availability_refresh


class Command(BaseCommand):
    help = "Recompute channel availability for every variant (what the 5-minute sweep runs)."

    def handle(self, *args, **options):
        def progress(total):
            self.stderr.write(
                f"\r… {total.variants:,} variants, {total.rows_written:,} rows", ending=""
            )

        result = availability_refresh(progress=progress)
        self.stderr.write("")
        self.stdout.write(
            self.style.SUCCESS(
                f"{result.variants:,} variants checked, {result.rows_written:,} rows written, "
                f"{result.events:,} events."
            )
        )
