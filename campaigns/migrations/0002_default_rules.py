"""Seed a messaging rule for each default messaging channel. Staff edit them in the admin;
existing rows are left alone."""

from datetime import time

from django.db import migrations

DEFAULT_RULES = [
    # code, cap, quiet hours, attribute on
    ("email", 3, None, "click"),
    ("sms", 2, (time(21, 0), time(8, 0)), "click"),
    ("push", 3, (time(21, 0), time(8, 0)), "click"),
    ("social-dm", 2, (time(21, 0), time(8, 0)), "click"),
]


def seed(apps, schema_editor):
    Channel = apps.get_model("omni", "Channel")
    MessagingRule = apps.get_model("campaigns", "MessagingRule")
    for code, cap, quiet, attribute_on in DEFAULT_RULES:
        channel = Channel.objects.filter(code=code).first()
        if channel is None or MessagingRule.objects.filter(channel=channel).exists():
            continue
        MessagingRule.objects.create(
            channel=channel,
            frequency_cap=cap,
            cap_period_hours=168,
            quiet_hours_start=quiet[0] if quiet else None,
            quiet_hours_end=quiet[1] if quiet else None,
            attribute_on=attribute_on,
        )


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0001_initial"), ("omni", "0002_default_channels")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
