import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from catalog.models import ChannelListing
from tests.factories import ListingFactory, VariantFactory

pytestmark = pytest.mark.django_db


def test_probe_export(client, staff_user):
    client.force_login(staff_user)
    v = VariantFactory()
    r = client.post(
        reverse("admin:catalog_product_changelist"),
        {"action": "export_selected", ACTION_CHECKBOX_NAME: [v.product_id]},
    )
    print(r.status_code, r.get("Content-Type"))
    print(b"".join(r.streaming_content)[:500])


def test_probe_publish(client, staff_user):
    client.force_login(staff_user)
    v = VariantFactory()
    r = client.post(
        reverse("admin:catalog_product_changelist"),
        {"action": "publish_on_channel", "channel": "app", ACTION_CHECKBOX_NAME: [v.product_id]},
        follow=True,
    )
    print([str(m) for m in r.context["messages"]])
    print(ChannelListing.objects.count())


def test_probe_search(client, staff_user, django_assert_max_num_queries):
    client.force_login(staff_user)
    for _ in range(3):
        ListingFactory()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        r = client.get(reverse("admin:catalog_product_changelist") + "?q=sku-0")
    for q in ctx.captured_queries:
        print(q["sql"][:300])
    print(r.context["cl"].result_count)
