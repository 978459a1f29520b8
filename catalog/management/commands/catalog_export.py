import csv

from django.core.management.base import BaseCommand

from catalog.selectors import catalog_export_rows


class Command(BaseCommand):
    help = "Export products, variants and listings as a catalog CSV (the import format)."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", default="-", help="File to write, or - for stdout")

    def handle(self, *args, output, **options):
        if output == "-":
            # self.stdout, not sys.stdout, so call_command(stdout=...) captures the CSV.
            count = self._write(self.stdout)
        else:
            with open(output, "w", encoding="utf-8", newline="") as handle:
                count = self._write(handle)
        self.stderr.write(f"\rExported {count} rows.")

    def _write(self, handle) -> int:
        writer = csv.writer(handle)
        count = -1
        for count, row in enumerate(catalog_export_rows()):
            writer.writerow(row)
            if count and count % 10000 == 0:
                self.stderr.write(f"\r  {count} rows", ending="")
        return max(count, 0)
