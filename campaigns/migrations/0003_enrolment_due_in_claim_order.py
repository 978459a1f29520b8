"""The claim's index in the claim's order: (campaign, due_at, id) of active enrolments.

Built before the old one is dropped, both concurrently on PostgreSQL (the migration is not
atomic), so the send task and detection keep reading and writing enrolments meanwhile."""

from django.db import migrations, models

OLD = models.Index(
    fields=["campaign", "due_at"], condition=models.Q(status="active"), name="enrolment_due_idx"
)
NEW = models.Index(
    fields=["campaign", "due_at", "id"],
    condition=models.Q(status="active"),
    name="enrolment_claim_idx",
)


def _swap(schema_editor, model, add, remove):
    options = {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}
    schema_editor.add_index(model, add, **options)
    schema_editor.remove_index(model, remove, **options)


def forwards(apps, schema_editor):
    _swap(schema_editor, apps.get_model("campaigns", "Enrolment"), NEW, OLD)


def backwards(apps, schema_editor):
    _swap(schema_editor, apps.get_model("campaigns", "Enrolment"), OLD, NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("campaigns", "0002_default_rules"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="enrolment", name="enrolment_due_idx"),
                migrations.AddIndex(model_name="enrolment", index=NEW),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
