"""Demo campaigns for ``load_demo``: follow-ups that go out on their own within minutes of
``make run``.

- Templates with a rendition per channel: a cart reminder (cart lines with prices, what
  others bought with them, a tracked link back to the cart), a pickup-ready notice (store,
  order number, the pickup QR code), a back-in-stock alert and an in-store thank-you.
- Rules: email falls back to SMS (a customer without an email opt-in gets the text).
- Active campaigns: "Abandoned cart reminder" (email, then SMS; a second nudge a day later;
  10 % holdout), "Pickup ready notice" (transactional: email, else SMS), "Back in stock"
  (email, else push) and "Thank you for your visit" (SMS an hour after a till sale); a
  win-back campaign as a draft.
- Activity for them: a few regular customers left web carts two hours ago (their times are
  moved back after the services ran, as the orders demo does for its overdue pickup); three
  customers wait for a variant that is back on the web shop, two for one still sold out.

The pickups the orders demo marked ready, Camille's open cart (once idle an hour) and the
carts above are found by the first trigger detection after start (every 5 minutes); the send
task writes the messages to the local outbox (``var/outbox``) and the dashboard shows them.
"""

from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from campaigns.models import (
    BackInStockSubscription,
    Campaign,
    CampaignStatus,
    CampaignStep,
    MessagingRule,
    Purpose,
    Template,
    Trigger,
)
from catalog.models import ChannelListing
from customers.models import ConsentState, ConsentStatus, Customer, CustomerChannelStat
from inventory.models import ChannelAvailability
from omni.models import Channel
from orders.models import Cart, CartStatus
from orders.services import LineInput, cart_create

SOURCE = "demo"

CART_REMINDER = {
    "name": "Cart reminder",
    "description": "The cart left on the web shop or in the app, with a link back to it.",
    "email_subject": "{{ customer.first_name|default:'Hello' }}, your cart is waiting",
    "email_html": """<p>Hello {{ customer.first_name|default:'there' }},</p>
<p>You left these in your cart:</p>
<table>
{% for line in cart.lines %}<tr>
  <td>{% if line.image_url %}<img src="{{ line.image_url }}" alt="" width="64">{% endif %}</td>
  <td><a href="{{ line.url }}">{{ line.title }}</a></td>
  <td>{{ line.quantity }} &times; {{ line.unit_price }} {{ line.currency }}</td>
</tr>{% endfor %}
</table>
<p><a href="{{ cart.url }}">Return to your cart</a></p>
{% if recommendations %}<p>Others also bought:</p><ul>
{% for item in recommendations %}<li><a href="{{ item.url }}">{{ item.title }}</a></li>{% endfor %}
</ul>{% endif %}
<p style="font-size:small"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>""",
    "email_text": """Hello {{ customer.first_name|default:'there' }},

You left these in your cart:
{% for line in cart.lines %}- {{ line.quantity }} x {{ line.title }} \
({{ line.unit_price }} {{ line.currency }})
{% endfor %}
Return to your cart: {{ cart.url }}

Unsubscribe: {{ unsubscribe_url }}""",
    "sms_text": "{{ customer.first_name|default:'Hi' }}, your cart is waiting: {{ cart.url }} "
    "STOP: {{ unsubscribe_url }}",
    "push_title": "Your cart is waiting",
    "push_body": "{{ cart.lines|length }} item{{ cart.lines|length|pluralize }} left in your cart.",
    "social_text": "Your cart is waiting for you: {{ cart.url }}",
}

PICKUP_READY = {
    "name": "Pickup ready",
    "description": "The order is ready at the store: where, and the code to show.",
    "email_subject": "Your order {{ order.number }} is ready at {{ store.name }}",
    "email_html": """<p>Hello {{ customer.first_name|default:'there' }},</p>
<p>Your order <strong>{{ order.number }}</strong> is ready for pickup at
<strong>{{ store.name }}</strong>.</p>
<p>Show this code at the counter:</p>
{{ order.qr_code }}
<p><a href="{{ order.pickup_url }}">Your pickup page</a></p>""",
    "email_text": """Hello {{ customer.first_name|default:'there' }},

Your order {{ order.number }} is ready for pickup at {{ store.name }}.
Your pickup page, with the code to show: {{ order.pickup_url }}""",
    "sms_text": "Order {{ order.number }} is ready at {{ store.name }}. Your code: "
    "{{ order.pickup_url }}",
    "push_title": "Ready for pickup",
    "push_body": "Order {{ order.number }} is ready at {{ store.name }}.",
    "social_text": "Your order {{ order.number }} is ready at {{ store.name }}: "
    "{{ order.pickup_url }}",
}

BACK_IN_STOCK = {
    "name": "Back in stock",
    "description": "The item the customer waited for is back.",
    "email_subject": "{{ variant.title }} is back",
    "email_html": """<p>Good news, {{ customer.first_name|default:'there' }}:
<a href="{{ variant.url }}">{{ variant.title }}</a> is back in stock.</p>
<p style="font-size:small"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>""",
    "email_text": "Good news: {{ variant.title }} is back in stock. {{ variant.url }}\n\n"
    "Unsubscribe: {{ unsubscribe_url }}",
    "sms_text": "{{ variant.title }} is back: {{ variant.url }}",
    "push_title": "Back in stock",
    "push_body": "{{ variant.title }} is back.",
    "social_text": "{{ variant.title }} is back in stock: {{ variant.url }}",
}

THANK_YOU = {
    "name": "Thank you for your visit",
    "description": "A text after a purchase at the till.",
    "email_subject": "Thank you for your visit to {{ store.name }}",
    "email_text": "Thank you for shopping at {{ store.name }}, "
    "{{ customer.first_name|default:'and see you soon' }}! {{ shop_url }}",
    "sms_text": "Thanks for your visit to {{ store.name }}! Our web shop: {{ shop_url }} "
    "STOP: {{ unsubscribe_url }}",
}


def _template(data: dict) -> Template:
    template, _ = Template.objects.update_or_create(name=data["name"], defaults=data)
    return template


def _campaign(name: str, steps, **fields) -> Campaign:
    campaign, created = Campaign.objects.get_or_create(name=name, defaults=fields)
    if created:
        for position, (delay, channels, template) in enumerate(steps, 1):
            CampaignStep.objects.create(
                campaign=campaign,
                position=position,
                delay_minutes=delay,
                channels=channels,
                template=template,
            )
    return campaign


def _idle_carts(web: Channel, count: int) -> int:
    """Web carts of web shoppers with an email opt-in, left two hours ago (web shoppers
    already, so the demo segments keep their members)."""
    email = Channel.objects.filter(code="email").first()
    if email is None:
        return 0
    customers = list(
        Customer.objects.filter(erased_at__isnull=True)
        .filter(
            Exists(
                ConsentState.objects.filter(
                    customer_id=OuterRef("pk"), channel=email, status=ConsentStatus.OPTED_IN
                )
            )
        )
        .filter(Exists(CustomerChannelStat.objects.filter(customer_id=OuterRef("pk"), channel=web)))
        .exclude(carts__status=CartStatus.OPEN)
        .order_by("-lifetime_revenue", "pk")[:count]
    )
    listings = list(
        ChannelListing.objects.filter(channel=web, is_published=True)
        .select_related("variant")
        .order_by("variant_id")[:40]
    )
    if not customers or not listings:
        return 0
    made = []
    for i, customer in enumerate(customers):
        lines = [LineInput(listings[(i * 3 + k) % len(listings)].variant.sku, 1) for k in (0, 1)]
        made.append(cart_create(channel=web, customer=customer, source=SOURCE, lines=lines).pk)
    two_hours_ago = timezone.now() - timedelta(hours=2)
    Cart.objects.filter(pk__in=made).update(
        created_at=two_hours_ago, last_activity_at=two_hours_ago
    )
    return len(made)


def _subscriptions(web: Channel) -> int:
    now = timezone.now()
    back = (
        ChannelAvailability.objects.filter(channel=web, quantity__gte=3)
        .order_by("variant_id")
        .values_list("variant_id", flat=True)
        .first()
    )
    sold_out = (
        ChannelListing.objects.filter(channel=web, is_published=True)
        .exclude(
            variant_id__in=ChannelAvailability.objects.filter(channel=web, quantity__gt=0).values(
                "variant_id"
            )
        )
        .order_by("variant_id")
        .values_list("variant_id", flat=True)
        .first()
    )
    people = list(
        Customer.objects.filter(erased_at__isnull=True, consent_states__status="opted_in")
        .distinct()
        .order_by("pk")[:5]
    )
    rows = []
    for i, customer in enumerate(people):
        variant_id = back if i < 3 else sold_out
        if variant_id is None:
            continue
        rows.append(
            BackInStockSubscription(
                customer=customer,
                variant_id=variant_id,
                channel=web,
                source="web shop 'notify me' button",
                created_at=now - timedelta(days=2 + i),
            )
        )
    BackInStockSubscription.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def generate_campaigns(*, progress=None) -> dict:
    """Load the demo campaigns once (skipped when campaigns exist)."""
    if Campaign.objects.exists():
        return {"skipped": True}
    channels = {c.code: c for c in Channel.objects.all()}
    web = channels.get("web")
    if web is None or "email" not in channels:
        return {"skipped": True}
    if "sms" in channels:
        MessagingRule.objects.filter(channel=channels["email"]).update(
            fallback_channel=channels["sms"]
        )
    cart_reminder = _template(CART_REMINDER)
    pickup = _template(PICKUP_READY)
    back = _template(BACK_IN_STOCK)
    thanks = _template(THANK_YOU)
    _campaign(
        "Abandoned cart reminder",
        [(0, "email", cart_reminder), (24 * 60, "email,sms", cart_reminder)],
        trigger=Trigger.CART_ABANDONED,
        purpose=Purpose.MARKETING,
        status=CampaignStatus.ACTIVE,
        idle_minutes=60,
        lookback_hours=72,
        holdout_percent=10,
        attribution_window_hours=72,
        reentry_cooldown_days=7,
        description="Email an hour after a cart is left (SMS when email is not allowed), "
        "again a day later; one customer in ten is held out to measure the lift.",
    )
    _campaign(
        "Pickup ready notice",
        [(0, "email,sms", pickup)],
        trigger=Trigger.PICKUP_READY,
        purpose=Purpose.TRANSACTIONAL,
        status=CampaignStatus.ACTIVE,
        exit_on_purchase=False,
        reentry_cooldown_days=0,
        lookback_hours=48,
        description="Tells the customer her pickup is ready, with the code to show.",
    )
    _campaign(
        "Back in stock",
        [(0, "email,push", back)],
        trigger=Trigger.BACK_IN_STOCK,
        purpose=Purpose.MARKETING,
        status=CampaignStatus.ACTIVE,
        sales_channel=web,
        reentry_cooldown_days=0,
        description="Customers who asked to be told when an item is back on the web shop.",
    )
    _campaign(
        "Thank you for your visit",
        [(60, "sms,email", thanks)],
        trigger=Trigger.STORE_PURCHASE,
        purpose=Purpose.MARKETING,
        status=CampaignStatus.ACTIVE,
        exit_on_purchase=False,
        lookback_hours=24,
        reentry_cooldown_days=30,
        description="A text an hour after a purchase at the till.",
    )
    _campaign(
        "Win-back after 90 days",
        [(0, "email", cart_reminder)],
        trigger=Trigger.WIN_BACK,
        purpose=Purpose.MARKETING,
        status=CampaignStatus.DRAFT,
        winback_days=90,
        reentry_cooldown_days=90,
        description="A draft: customers whose last purchase was 90 days ago.",
    )
    carts = _idle_carts(web, 6)
    subscriptions = _subscriptions(web)
    if progress:
        progress("campaigns", Campaign.objects.count())
    return {
        "campaigns": Campaign.objects.filter(status=CampaignStatus.ACTIVE).count(),
        "templates": Template.objects.count(),
        "idle_carts": carts,
        "subscriptions": subscriptions,
    }
