"""Seed the default channels. Staff add more in the admin; existing rows are left alone."""

from django.db import migrations

DEFAULT_CHANNELS = [
    ("store", "Stores (POS)", "store_pos", "EUR"),
    ("web", "Web shop", "web", "EUR"),
    ("app", "Mobile app", "app", "EUR"),
    ("social-shop", "Social shop", "social", "EUR"),
    ("marketplace", "Marketplace", "marketplace", "EUR"),
    ("email", "Email", "email", ""),
    ("sms", "SMS", "sms", ""),
    ("push", "Push notifications", "push", ""),
    ("social-dm", "Social messages", "social_dm", ""),
    ("ads-audience", "Ads audiences", "ads_audience", ""),
]


def seed(apps, schema_editor):
    Channel = apps.get_model("omni", "Channel")
    for code, name, kind, currency in DEFAULT_CHANNELS:
        Channel.objects.get_or_create(
            code=code, defaults={"name": name, "kind": kind, "currency": currency}
        )


class Migration(migrations.Migration):
    dependencies = [("omni", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
