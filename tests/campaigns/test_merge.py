"""Enrolments, messages and back-in-stock subscriptions follow a customer merge; where both
profiles were enrolled for the same subject (or wait for the same item), the survivor's row
goes on and the other is kept closed (or dropped), so the unique constraints hold."""

from django.utils import timezone

from campaigns.models import BackInStockSubscription, Enrolment, Message, Trigger
from customers.services import customer_merge
from tests.factories import VariantFactory


def test_merge_folds_enrolments_messages_and_subscriptions(make_customer, make_campaign, channels):
    older, newer = make_customer(), make_customer()
    campaign = make_campaign(trigger=Trigger.BROADCAST)
    other = make_campaign(name="Other", trigger=Trigger.BROADCAST)
    now = timezone.now()

    def enrol(customer, campaign, key):
        return Enrolment.objects.create(
            campaign=campaign, customer=customer, subject_key=key, enrolled_at=now, due_at=now
        )

    kept = enrol(older, campaign, "broadcast:1")
    clash = enrol(newer, campaign, "broadcast:1")
    moved = enrol(newer, other, "broadcast:1")
    Message.objects.create(
        enrolment=clash,
        campaign=campaign,
        step=campaign.steps.get(),
        customer=newer,
        status="sent",
        created_at=now,
    )
    variant = VariantFactory(sku="SKU-W")
    for customer in (older, newer):
        BackInStockSubscription.objects.create(
            customer=customer, variant=variant, channel=channels.web, source="t", created_at=now
        )

    survivor, _ = customer_merge(customers=[older, newer], reason="same person")

    assert survivor.pk == older.pk
    rows = {
        e.pk: (e.customer_id, e.subject_key, e.status, e.exit_reason)
        for e in Enrolment.objects.all()
    }
    assert rows == {
        kept.pk: (older.pk, "broadcast:1", "active", ""),
        clash.pk: (older.pk, f"broadcast:1#merged-{clash.pk}", "exited", "merged"),
        moved.pk: (older.pk, "broadcast:1", "active", ""),
    }
    assert list(Message.objects.values_list("customer_id", "enrolment_id")) == [
        (older.pk, clash.pk)
    ]
    assert list(BackInStockSubscription.objects.values_list("customer_id", flat=True)) == [older.pk]


def test_erasure_keeps_the_campaign_record_without_personal_fields(make_customer, make_campaign):
    from customers.services import customer_erase

    customer = make_customer(email="zoe@example.com")
    campaign = make_campaign(trigger=Trigger.BROADCAST)
    now = timezone.now()
    enrolment = Enrolment.objects.create(
        campaign=campaign, customer=customer, subject_key="b", enrolled_at=now, due_at=now
    )
    Message.objects.create(
        enrolment=enrolment,
        campaign=campaign,
        step=campaign.steps.get(),
        customer=customer,
        status="sent",
        to="zoe@example.com",
        preview="Zoé, your cart",
        created_at=now,
    )

    customer_erase(customer=customer, source="test")

    enrolment.refresh_from_db()
    assert (enrolment.status, enrolment.exit_reason, enrolment.due_at) == (
        "exited",
        "customer_erased",
        None,
    )
    assert list(Message.objects.values_list("status", "to", "preview")) == [("sent", "", "")]
