"""The timeline JSON of the events recorded before it was stored at ingest.

Not atomic: each batch commits on its own, so the table is never locked for the whole run and
the site stays up meanwhile (a page computes the JSON of events still without it)."""

from django.db import migrations

BATCH = 100_000


def store_renditions(apps, schema_editor):
    """Write the timeline JSON of the events recorded so far (PostgreSQL only; elsewhere the
    timeline never reads it), in batches of ids so that no statement runs long."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    from customers.timeline_json import rendition_sql

    Touchpoint = apps.get_model("customers", "Touchpoint")
    Channel = apps.get_model("omni", "Channel")
    Location = apps.get_model("inventory", "Location")
    quote = connection.ops.quote_name
    table = quote(Touchpoint._meta.db_table)
    rendition = rendition_sql(
        quote(Channel._meta.db_table), quote(Location._meta.db_table), row="t"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(id), max(id) FROM {table}")
        low, high = cursor.fetchone()
        if low is None:
            return
        for start in range(low, high + 1, BATCH):
            cursor.execute(
                f"UPDATE {table} AS t SET rendition = {rendition} "
                "WHERE t.id >= %s AND t.id < %s AND t.rendition IS NULL",
                [start, start + BATCH],
            )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("customers", "0006_touchpoint_order_cancelled"),
        ("inventory", "0001_initial"),
        ("omni", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(store_renditions, migrations.RunPython.noop, elidable=True),
    ]
