from django.db import migrations

# Cookies and devices can be shared (a family computer, a store tablet): they never merge two
# customers unless staff change it.
NEVER_MERGE = {"web_cookie", "app_device"}
KINDS = [
    "email",
    "phone",
    "loyalty_card",
    "pos_customer_id",
    "app_device",
    "social_handle",
    "web_cookie",
]


def seed(apps, schema_editor):
    Rule = apps.get_model("customers", "IdentityKindRule")
    for kind in KINDS:
        Rule.objects.get_or_create(kind=kind, defaults={"may_merge": kind not in NEVER_MERGE})


class Migration(migrations.Migration):
    dependencies = [("customers", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
