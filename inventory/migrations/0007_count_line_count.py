"""A count's number of lines, kept on the count: written once with its lines, and filled here
for the counts there are (one grouped statement).

Not atomic: the column is added at once (a default, no rewrite) and its lock let go before the
lines are counted, so counts and count requests are not held up meanwhile. It has a database
default, so the code of the release before can still write counts during the deploy."""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def fill(apps, schema_editor):
    StockCount = apps.get_model("inventory", "StockCount")
    StockCountLine = apps.get_model("inventory", "StockCountLine")
    lines = (
        StockCountLine.objects.filter(count=OuterRef("pk"))
        .order_by()
        .values("count")
        .annotate(n=Count("pk"))
        .values("n")
    )
    StockCount.objects.update(line_count=Coalesce(Subquery(lines), 0))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("inventory", "0006_stock_rows_room_to_update"),
    ]

    operations = [
        migrations.AddField(
            model_name="stockcount",
            name="line_count",
            field=models.PositiveIntegerField(
                db_default=0, default=0, editable=False, verbose_name="lines"
            ),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=True),
    ]
