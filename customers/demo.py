"""Demo customers for ``load_demo``: journeys that cross channels, a merged pair, consents, an
open conversation that moved from social media to email, and a few segments.

Everything goes through the services an integrator's events would reach (touchpoint ingest,
consent, conversations), so identity resolution builds the profiles: the app browse, the web
cart and the store purchase of Camille Laurent share identifiers and end on one customer; the
web account and the loyalty card of Hugo Martin were two profiles until a store purchase carried
both his email and his phone, which merged them.
"""

import random
import unicodedata
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from catalog.models import Variant
from inventory.models import Location, LocationKind
from omni.models import Channel

from .models import (
    AgeRange,
    ConsentStatus,
    Customer,
    Gender,
    Segment,
    SegmentMatch,
    SegmentRule,
    SegmentRuleKind,
    Touchpoint,
)
from .services import (
    consent_record,
    conversation_message_add,
    customer_update,
    segment_count_refresh,
    touchpoints_ingest,
)

SOURCE = "demo"
FIRST = [
    "Camille",
    "Hugo",
    "Léa",
    "Lucas",
    "Chloé",
    "Nathan",
    "Manon",
    "Louis",
    "Emma",
    "Jules",
    "Inès",
    "Gabriel",
    "Sarah",
    "Arthur",
    "Zoé",
    "Adam",
    "Alice",
    "Raphaël",
    "Jade",
    "Tom",
]
LAST = [
    "Laurent",
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Michel",
    "Lefebvre",
    "Garcia",
    "Roux",
]
CITIES = ["Paris", "Lyon", "Marseille", "Lille", "Nantes", "Bordeaux", "Toulouse"]
JOBS = ["Teacher", "Engineer", "Nurse", "Designer", "Student", "Retired", "Chef", "Lawyer"]


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _event(n, kind, channel, when, identifiers, **extra):
    return {
        "event_id": f"demo-{n}",
        "kind": kind,
        "channel": channel,
        "occurred_at": when.isoformat(),
        "identifiers": identifiers,
        **extra,
    }


def _channel(kind: str) -> str | None:
    return (
        Channel.objects.filter(kind=kind, is_active=True)
        .order_by("code")
        .values_list("code", flat=True)
        .first()
    )


def generate_customers(*, customers: int = 200, progress=None, seed: int = 7) -> dict:
    """Create the demo population (skipped when customers exist). Returns counts."""
    if Customer.objects.exists():
        return {"customers": Customer.objects.count(), "touchpoints": 0, "merges": 0}
    rng = random.Random(seed)
    now = timezone.now()
    web, app, pos = _channel("web"), _channel("app"), _channel("store_pos")
    social, email_ch, sms = _channel("social"), _channel("email"), _channel("sms")
    dm = _channel("social_dm")
    stores = list(Location.objects.filter(kind=LocationKind.STORE).order_by("code"))
    skus = list(Variant.objects.order_by("pk").values_list("sku", flat=True)[:200]) or ["DEMO"]
    events, n = [], 0

    def add(kind, channel, when, identifiers, **extra):
        nonlocal n
        n += 1
        if channel:
            events.append(_event(n, kind, channel, when, identifiers, **extra))

    # 1. Camille: an app browse, a web cart and a store purchase with the same phone.
    camille_email = {"kind": "email", "value": "camille.laurent@example.com"}
    camille_phone = {"kind": "phone", "value": "06 11 22 33 44"}
    store = stores[0].code if stores else None
    add("app_open", app, now - timedelta(days=6), [{"kind": "app_device", "value": "dev-camille"}])
    add(
        "product_view",
        app,
        now - timedelta(days=6, hours=-1),
        [{"kind": "app_device", "value": "dev-camille"}, camille_email],
        properties={"sku": skus[0]},
    )
    add(
        "add_to_cart",
        web,
        now - timedelta(days=4),
        [{"kind": "web_cookie", "value": "ck-camille"}, camille_email],
        properties={"sku": skus[0], "quantity": 1},
    )
    add(
        "checkout_started",
        web,
        now - timedelta(days=4, hours=-1),
        [{"kind": "web_cookie", "value": "ck-camille"}, camille_email],
    )
    add("store_visit", pos, now - timedelta(days=1), [camille_phone], location=store)
    add(
        "purchase",
        pos,
        now - timedelta(days=1, hours=-1),
        [camille_phone, camille_email],
        location=store,
        properties={"amount": "89.90", "sku": skus[0], "order": "POS-1001"},
    )

    # 2. Hugo: a web account and a loyalty card, merged by a store purchase carrying both.
    hugo_email = {"kind": "email", "value": "hugo.martin@example.com"}
    hugo_phone = {"kind": "phone", "value": "+33 6 55 44 33 22"}
    hugo_card = {"kind": "loyalty_card", "value": "LOY 0042 7788"}
    add("product_view", web, now - timedelta(days=30), [hugo_email], properties={"sku": skus[1]})
    add(
        "purchase",
        web,
        now - timedelta(days=29),
        [hugo_email],
        properties={"amount": "45.00", "order": "WEB-2001"},
    )
    add("store_visit", pos, now - timedelta(days=20), [hugo_card, hugo_phone], location=store)
    add(
        "purchase",
        pos,
        now - timedelta(days=20, hours=-1),
        [hugo_card, hugo_phone],
        location=store,
        properties={"amount": "120.00", "order": "POS-1002"},
    )
    touchpoints_ingest(source=SOURCE, events=events)
    merges = touchpoints_ingest(
        source=SOURCE,
        events=[
            _event(
                "hugo-merge",
                "purchase",
                pos,
                now - timedelta(days=2),
                [hugo_phone, hugo_email],
                location=store,
                properties={"amount": "35.50", "order": "POS-1003"},
            )
        ],
    ).merges
    events.clear()

    # 3. A population of shoppers with ordinary journeys.
    kinds = [
        "product_view",
        "product_view",
        "search",
        "add_to_cart",
        "app_open",
        "store_visit",
        "message_opened",
        "link_clicked",
        "purchase",
    ]
    for i in range(customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        address = _ascii(f"{first}.{last}.{i}@example.com".lower())
        ids = [{"kind": "email", "value": address}]
        if rng.random() < 0.6:
            ids.append({"kind": "phone", "value": f"+3367{i:07d}"})
        if rng.random() < 0.4:
            ids.append({"kind": "loyalty_card", "value": f"LOY{i:08d}"})
        for _ in range(rng.randint(2, 9)):
            kind = rng.choice(kinds)
            channel = {
                "app_open": app,
                "store_visit": pos,
                "message_opened": email_ch,
                "link_clicked": email_ch,
            }.get(kind) or rng.choice([web, web, app, pos, social])
            extra = {}
            if kind == "purchase":
                extra["properties"] = {"amount": str(Decimal(rng.randint(1500, 25000)) / 100)}
            elif kind in ("product_view", "add_to_cart"):
                extra["properties"] = {"sku": rng.choice(skus)}
            if channel == pos and stores:
                extra["location"] = rng.choice(stores).code
            add(kind, channel, now - timedelta(minutes=rng.randint(60, 90 * 24 * 60)), ids, **extra)
        if len(events) >= 800:
            touchpoints_ingest(source=SOURCE, events=events)
            events.clear()
            if progress:
                progress("customers", i + 1)
    if events:
        touchpoints_ingest(source=SOURCE, events=events)
    if progress:
        progress("customers", customers)

    # Profiles, consents and a conversation, as staff and forms would record them.
    population = list(Customer.objects.order_by("pk"))
    for customer in population:
        customer_update(
            customer=customer,
            data={
                "first_name": rng.choice(FIRST),
                "last_name": rng.choice(LAST),
                "age_range": rng.choice(AgeRange.values[1:]),
                "gender": rng.choice(Gender.values),
                "city": rng.choice(CITIES),
                "occupation": rng.choice(JOBS),
                "language": rng.choice(["fr", "fr", "en"]),
                "home_store": rng.choice(stores) if stores and rng.random() < 0.7 else None,
            },
        )
    named = {
        "camille.laurent@example.com": ("Camille", "Laurent"),
        "hugo.martin@example.com": ("Hugo", "Martin"),
    }
    for address, (first, last) in named.items():
        customer = Customer.objects.get(identities__kind="email", identities__value=address)
        customer_update(customer=customer, data={"first_name": first, "last_name": last})
    email_channel = Channel.objects.get(code=email_ch) if email_ch else None
    sms_channel = Channel.objects.get(code=sms) if sms else None
    for customer in population:
        if email_channel and rng.random() < 0.75:
            consent_record(
                customer=customer,
                channel=email_channel,
                status=ConsentStatus.OPTED_IN,
                source="web sign-up form",
                occurred_at=customer.first_seen_at or now,
                proof="Checkbox 'Keep me posted' ticked",
            )
        if sms_channel and rng.random() < 0.35:
            consent_record(
                customer=customer,
                channel=sms_channel,
                status=ConsentStatus.OPTED_IN,
                source="store counter",
                occurred_at=customer.first_seen_at or now,
            )
    hugo = Customer.objects.get(
        identities__kind="email", identities__value="hugo.martin@example.com"
    )
    if sms_channel:
        consent_record(
            customer=hugo,
            channel=sms_channel,
            status=ConsentStatus.OPTED_IN,
            source="store counter",
            occurred_at=now - timedelta(days=20),
        )
        consent_record(
            customer=hugo,
            channel=sms_channel,
            status=ConsentStatus.OPTED_OUT,
            source="SMS STOP reply",
            occurred_at=now - timedelta(days=3),
            proof="Replied STOP to +33 7 00 00 00 00",
        )
    camille = Customer.objects.get(
        identities__kind="email", identities__value="camille.laurent@example.com"
    )
    if dm and email_channel:
        conversation_message_add(
            customer=camille,
            channel=Channel.objects.get(code=dm),
            source=SOURCE,
            external_id="dm-1",
            sent_at=now - timedelta(days=3),
            body="Hi! My order from the web shop shows 'ready' but the store says it isn't. "
            "Can you check?",
            subject="Pickup status for my web order",
        )
        conversation_message_add(
            customer=camille,
            channel=email_channel,
            source=SOURCE,
            external_id="mail-1",
            sent_at=now - timedelta(days=2),
            body="Following up by email as suggested on Instagram: I can collect tomorrow "
            "after 6 pm if it is ready.",
        )

    segments = [
        (
            "Web shoppers reachable by email",
            SegmentMatch.ALL,
            [
                {
                    "kind": SegmentRuleKind.CHANNEL_USED,
                    "channel": Channel.objects.filter(code=web).first(),
                },
                {"kind": SegmentRuleKind.CONSENT, "channel": email_channel},
            ],
        ),
        (
            "Big spenders",
            SegmentMatch.ALL,
            [
                {"kind": SegmentRuleKind.REVENUE_AT_LEAST, "amount": Decimal("200")},
            ],
        ),
        (
            "Lapsed buyers (no purchase in 60 days)",
            SegmentMatch.ALL,
            [
                {"kind": SegmentRuleKind.ORDERS_AT_LEAST, "amount": Decimal("1")},
                {"kind": SegmentRuleKind.PURCHASED_WITHIN, "days": 60, "negate": True},
            ],
        ),
    ]
    for name, match, rules in segments:
        segment, created = Segment.objects.get_or_create(name=name, defaults={"match": match})
        if created:
            for rule in rules:
                SegmentRule.objects.create(segment=segment, **rule)
    segment_count_refresh()
    return {
        "customers": Customer.objects.count(),
        "touchpoints": Touchpoint.objects.count(),
        "merges": merges,
    }
