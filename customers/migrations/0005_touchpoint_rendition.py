from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0004_alter_segmentrule_kind"),
    ]

    operations = [
        migrations.AddField(
            model_name="touchpoint",
            name="rendition",
            field=models.TextField(blank=True, editable=False, null=True),
        ),
    ]
