"""Queued messages are read campaign by campaign: the (campaign, next_attempt_at, id) index of
queued messages replaces the one on next_attempt_at alone.

With the old index every delivery batch walked the queue in time order and passed over each
message of a paused campaign (they stay queued until it is activated again): a paused campaign
with 300,000 messages waiting cost each batch about 40 ms, for nothing. Built before the old
one is dropped, both concurrently on PostgreSQL (the migration is not atomic), so sending goes
on meanwhile."""

from django.db import migrations, models

OLD = models.Index(
    fields=["next_attempt_at"], condition=models.Q(status="queued"), name="message_queued_idx"
)
NEW = models.Index(
    fields=["campaign", "next_attempt_at", "id"],
    condition=models.Q(status="queued"),
    name="message_queue_idx",
)


def _swap(schema_editor, model, add, remove):
    options = {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}
    schema_editor.add_index(model, add, **options)
    schema_editor.remove_index(model, remove, **options)


def forwards(apps, schema_editor):
    _swap(schema_editor, apps.get_model("campaigns", "Message"), NEW, OLD)


def backwards(apps, schema_editor):
    _swap(schema_editor, apps.get_model("campaigns", "Message"), OLD, NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("campaigns", "0003_enrolment_due_in_claim_order"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="message", name="message_queued_idx"),
                migrations.AddIndex(model_name="message", index=NEW),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
