import sys

from django.core.management.base import BaseCommand, CommandError

from catalog.services import catalog_import_csv
from omni.exceptions import ValidationFailed


class Command(BaseCommand):
    help = "Import products, variants and listings from a catalog CSV (all rows or none)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="CSV file, or - for standard input")

    def handle(self, *args, path, **options):
        def progress(done, total):
            self.stderr.write(f"\r  validated {done}/{total} rows", ending="")

        try:
            if path == "-":
                result = catalog_import_csv(stream=sys.stdin.read(), progress=progress)
            else:
                with open(path, encoding="utf-8-sig", newline="") as handle:
                    result = catalog_import_csv(stream=handle, progress=progress)
        except FileNotFoundError as exc:
            raise CommandError(f"No such file: {path}") from exc
        except ValidationFailed as exc:
            self.stderr.write("")
            for error in exc.extra.get("errors", []):
                self.stderr.write(
                    f"row {error['row']}, column {error['column']}: {error['message']}"
                )
            raise CommandError(exc.message) from exc
        self.stderr.write("")
        self.stdout.write(self.style.SUCCESS(f"Imported {result.summary()}"))
