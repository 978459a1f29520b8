from customers.models import Customer, CustomerMerge, Identity, Touchpoint
from customers.services import customer_resolve, touchpoints_ingest


def test_resolution_creates_attaches_and_merges(channels, ident):
    a, _ = customer_resolve(identifiers=[ident("email", "Ana@Example.com")], source="t")
    b, _ = customer_resolve(identifiers=[ident("phone", "06 12 34 56 78")], source="t")
    assert a.pk != b.pk
    same, res = customer_resolve(
        identifiers=[ident("email", "ana@example.com"), ident("loyalty_card", "12 34")], source="t"
    )
    assert same.pk == a.pk and res.attached == 1
    merged, res = customer_resolve(
        identifiers=[ident("phone", "+33612345678"), ident("loyalty_card", "1234")], source="t"
    )
    assert merged.pk == a.pk
    assert len(res.merges) == 1
    assert Customer.objects.count() == 1
    assert Identity.objects.filter(customer=a).count() == 3
    assert CustomerMerge.objects.get().merged_customer_id == b.pk


def test_ingest_batch(channels):
    events = [
        {
            "event_id": f"e{i}",
            "kind": "product_view",
            "channel": "web",
            "occurred_at": "2026-11-01T10:00:00Z",
            "identifiers": [{"kind": "web_cookie", "value": f"c{i % 3}"}],
        }
        for i in range(9)
    ] + [
        {
            "event_id": "p1",
            "kind": "purchase",
            "channel": "pos",
            "occurred_at": "2026-11-02T10:00:00Z",
            "identifiers": [
                {"kind": "phone", "value": "0612345678"},
                {"kind": "web_cookie", "value": "c1"},
            ],
            "properties": {"amount": "12.50"},
        }
    ]
    result = touchpoints_ingest(source="client:1", events=events)
    assert result.created == 10 and result.new_customers == 3
    again = touchpoints_ingest(source="client:1", events=events)
    assert again.created == 0 and again.duplicates == 10
    assert Touchpoint.objects.count() == 10
    buyer = Customer.objects.get(identities__value="+33612345678")
    assert buyer.lifetime_orders == 1 and str(buyer.lifetime_revenue) == "12.50"
    assert buyer.touchpoints.count() == 4
