"""The campaign benchmark's data: the customer population plus carts, orders and a campaign.

On top of ``bench/customers_data.py``'s population (1,000,000 customers with identities,
consents on email, SMS and push, touchpoints), set-based in SQL and in one transaction:

- a small catalog (``catalog.demo.generate_catalog``: 50 products, listed with prices on
  every sales channel);
- 5,000 shipped web orders of 1 to 4 lines from 30 to 60 days ago, the items of an order
  drawn from neighbouring products, so "bought together" recommendations have something to
  find;
- open web carts of one or two lines (at the web listing's price): 50,000 eligible ones
  (customers opted in on email with an email address, not erased, idle 90 to 150 minutes),
  one per customer, and at least as many that the campaign must leave alone: fresh (idle 2 to
  10 minutes), converted, anonymous, too old (4 to 10 days), of customers without an email
  opt-in, without lines, and every erased customer's;
- one active campaign "bench: cart abandoned" (marketing, idle 60 minutes, look-back 72 hours,
  no holdout, a week's re-entry cooldown) with one step (no delay, email) whose template
  renders the cart lines with prices, a link back to the cart, recommendations and an
  unsubscribe link, checked by ``campaign_activate``; the email rule: consent required, a cap
  of 3 a week, quiet hours that do not cover the time of the run (so they are checked, not
  hit).

Every choice derives from hashes of row numbers: two runs at the same scale build the same
data. ``generate`` returns the sizes, the counts and ``now``, the moment the carts' ages are
measured from (detection runs at that moment).
"""

import time
from datetime import datetime, timedelta
from datetime import time as dt_time
from zoneinfo import ZoneInfo

ELIGIBLE = 50_000
ORDERS = 5_000
PRODUCTS = 50
CAMPAIGN = "bench: cart abandoned"
TEMPLATE = "bench: cart reminder"
SOURCE = "bench"
# Kinds of carts the campaign must not pick, each this share of the eligible ones.
OTHER_KINDS = ("fresh", "converted", "anonymous", "too_old", "no_consent", "empty")
OTHER_SHARE = 0.25

TEMPLATE_FIELDS = {
    "description": "The campaign benchmark's cart reminder (bench/campaigns_data.py).",
    "email_subject": "{{ customer.first_name|default:'Hello' }}, your cart is waiting",
    "email_html": """<p>Hello {{ customer.first_name|default:'there' }},</p>
<p>You left {{ cart.item_count }} item{{ cart.item_count|pluralize }} in your cart:</p>
<table>
{% for line in cart.lines %}<tr>
  <td>{% if line.image_url %}<img src="{{ line.image_url }}" alt="" width="64">{% endif %}</td>
  <td><a href="{{ line.url }}">{{ line.title }}</a><br><small>{{ line.options }}</small></td>
  <td>{{ line.quantity }} &times; {{ line.unit_price }} {{ line.currency }}</td>
  <td>{{ line.line_total }} {{ line.currency }}</td>
</tr>{% endfor %}
<tr><td colspan="3">Total</td><td>{{ cart.total }} {{ cart.currency }}</td></tr>
</table>
<p><a href="{{ cart.url }}">Return to your cart</a></p>
{% if recommendations %}<p>Others also bought:</p><ul>
{% for item in recommendations %}<li><a href="{{ item.url }}">{{ item.title }}</a>,
{{ item.price }} {{ item.currency }}</li>{% endfor %}
</ul>{% endif %}
<p style="font-size:small"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>""",
    "email_text": """Hello {{ customer.first_name|default:'there' }},

You left these in your cart:
{% for line in cart.lines %}- {{ line.quantity }} x {{ line.title }} ({{ line.options }}): {{ line.unit_price }} {{ line.currency }}
  {{ line.url }}
{% endfor %}Total: {{ cart.total }} {{ cart.currency }}

Return to your cart: {{ cart.url }}
{% if recommendations %}
Others also bought:
{% for item in recommendations %}- {{ item.title }}, {{ item.price }} {{ item.currency }}: {{ item.url }}
{% endfor %}{% endif %}
Unsubscribe: {{ unsubscribe_url }}""",  # noqa: E501
}


def sizes(scale: float) -> dict:
    eligible = max(100, round(ELIGIBLE * scale))
    other = max(25, round(eligible * OTHER_SHARE))
    return {
        "eligible_carts": eligible,
        "other_carts_per_kind": other,
        "orders": ORDERS,
        "products": PRODUCTS,
    }


def generate(log, *, scale: float = 1.0) -> dict:
    """Build the population, then the catalog, orders, carts and the campaign."""
    from bench import customers_data

    population = customers_data.generate(log, scale=scale)
    started = time.perf_counter()
    size = sizes(scale)
    stages = []

    def stage(name, rows):
        elapsed = time.perf_counter() - started
        took = elapsed - (stages[-1]["at"] if stages else 0)
        stages.append(
            {"stage": name, "rows": rows, "seconds": round(took, 1), "at": round(elapsed, 1)}
        )
        log(f"  {elapsed:6.1f}s  {name}: {rows:,} rows ({took:.1f} s)")

    from django.db import connection, transaction
    from django.utils import timezone

    from catalog.demo import generate_catalog
    from omni.models import Channel

    channels = {c.code: c for c in Channel.objects.all()}
    web, email = channels["web"], channels["email"]
    now = timezone.now().replace(microsecond=0)
    with transaction.atomic():
        made = generate_catalog(products=PRODUCTS, seed=11)
        stage(
            f"catalog ({made['products']} products, {made['variants']} variants)", made["listings"]
        )
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '256MB'; SET LOCAL jit = off")
            variants = _web_variants(cursor, web.pk)
            if len(variants) < 20:
                raise RuntimeError(f"only {len(variants)} variants are sold on the web")
            stage("web listings used by carts and orders", len(variants))
            stage("orders (with their lines)", _orders(cursor, size, web.pk, variants, now))
            picked = _customers(cursor, size, email.pk)
            stage("customers picked for the carts", picked)
            carts, lines = _carts(cursor, size, web.pk, variants, now)
            stage("carts", carts)
            stage("cart lines", lines)
    campaign = make_campaign(now)
    stage(f"campaign {campaign.name!r} (active) and the email rule", 1)
    with connection.cursor() as cursor:
        for table in ("orders_cart", "orders_cartline", "orders_order", "orders_orderline"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    stage("vacuum analyze", 0)
    counts = cart_counts(now)
    log("  carts: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    return {
        "population": population,
        **size,
        "scale": scale,
        "now": now,
        "seconds": round(time.perf_counter() - started, 1),
        "stages": stages,
        "carts": counts,
        "campaign_id": campaign.pk,
    }


def _web_variants(cursor, web_id: int) -> list[tuple[int, str]]:
    cursor.execute(
        "SELECT l.variant_id FROM catalog_channellisting l "
        "JOIN catalog_variant v ON v.id = l.variant_id "
        "WHERE l.channel_id = %s AND l.is_published AND v.is_active ORDER BY l.variant_id",
        [web_id],
    )
    return [row[0] for row in cursor.fetchall()]


def _orders(cursor, size, web_id, variants, now) -> int:
    """Shipped web orders whose items are neighbours in the catalog (bought together)."""
    n = size["orders"]
    cursor.execute(
        """
        CREATE TEMP TABLE bench_order_lines ON COMMIT DROP AS
        SELECT o.g, k AS line_number,
          (%(variants)s::bigint[])[1 + (o.base + (k - 1) * (1 + (hashint8extended(o.g, 303) & 3)))
                                       %% cardinality(%(variants)s::bigint[])] AS variant_id,
          1 + (hashint8extended(o.g * 10 + k, 304) & 1) AS quantity
        FROM (SELECT g, hashint8extended(g, 301) & 2147483647 AS base,
                     1 + (hashint8extended(g, 302) & 2147483647) %% 4 AS lines
              FROM generate_series(1, %(n)s) AS g) o
        CROSS JOIN LATERAL generate_series(1, o.lines) AS k
        """,
        {"variants": variants, "n": n},
    )
    cursor.execute(
        """
        CREATE TEMP TABLE bench_order_priced ON COMMIT DROP AS
        SELECT b.g, b.line_number, b.variant_id, v.sku, p.title, b.quantity, l.price,
          l.price * b.quantity AS line_total
        FROM bench_order_lines b
        JOIN catalog_variant v ON v.id = b.variant_id
        JOIN catalog_product p ON p.id = v.product_id
        JOIN catalog_channellisting l ON l.variant_id = b.variant_id AND l.channel_id = %s
        """,
        [web_id],
    )
    cursor.execute(
        """
        INSERT INTO orders_order (number, channel_id, customer_id, external_reference, status,
          fulfilment_method, store_id, pickup_code, public_token, currency, subtotal, total,
          refunded_total, contact_name, contact_email, contact_phone, shipping_address, note,
          placed_at, expected_ready_at, ready_at, closed_at, needs_attention, attention_reason,
          source, created_by_id, updated_at)
        SELECT 'BENCH' || lpad(t.g::text, 7, '0'), %(web)s, NULL, NULL, 'shipped', 'ship',
          NULL, '', md5('bench-order:' || t.g), 'EUR', t.total, t.total, 0, '', '', '',
          '1 rue de la Paix, 75002 Paris', '', t.at, NULL, NULL, t.at + interval '1 day',
          false, '', %(source)s, NULL, t.at + interval '1 day'
        FROM (SELECT g, sum(line_total) AS total,
                %(now)s::timestamptz - (30 + (hashint8extended(g, 305) & 2147483647) %% 30)
                  * interval '1 day' AS at
              FROM bench_order_priced GROUP BY g) t
        ORDER BY t.g
        """,
        {"web": web_id, "now": now, "source": SOURCE},
    )
    created = cursor.rowcount
    cursor.execute(
        """
        INSERT INTO orders_orderline (order_id, line_number, variant_id, sku, title, quantity,
          unit_price, line_total, returned_quantity, transfer_id, transfer_quantity)
        SELECT o.id, b.line_number, b.variant_id, b.sku, b.title, b.quantity, b.price,
          b.line_total, 0, NULL, 0
        FROM bench_order_priced b
        JOIN orders_order o ON o.number = 'BENCH' || lpad(b.g::text, 7, '0')
        ORDER BY o.id, b.line_number
        """
    )
    return created


def _customers(cursor, size, email_id: int) -> int:
    """Which customer gets which kind of cart (a temporary table ``bench_cart_plan``)."""
    e, k = size["eligible_carts"], size["other_carts_per_kind"]
    # Reachable: opted in on email, an email address, not erased.
    cursor.execute(
        """
        CREATE TEMP TABLE bench_reachable ON COMMIT DROP AS
        SELECT c.id, row_number() OVER (ORDER BY hashint8extended(c.id, 311), c.id) AS n
        FROM customers_customer c
        WHERE c.erased_at IS NULL
          AND EXISTS (SELECT 1 FROM customers_consentstate s WHERE s.customer_id = c.id
                      AND s.channel_id = %(email)s AND s.status = 'opted_in')
          AND EXISTS (SELECT 1 FROM customers_identity i WHERE i.customer_id = c.id
                      AND i.kind = 'email')
        """,
        {"email": email_id},
    )
    cursor.execute("SELECT count(*) FROM bench_reachable")
    reachable = cursor.fetchone()[0]
    if reachable < e + 3 * k:
        raise RuntimeError(
            f"only {reachable:,} customers are reachable by email; the carts need {e + 3 * k:,}"
        )
    cursor.execute(
        """
        CREATE TEMP TABLE bench_cart_plan (n bigserial, customer_id bigint, kind text)
        ON COMMIT DROP
        """
    )
    # Eligible first, then the customers of fresh, converted and too-old carts (reachable
    # too: only the cart keeps them out).
    cursor.execute(
        """
        INSERT INTO bench_cart_plan (customer_id, kind)
        SELECT id, CASE WHEN n <= %(e)s THEN 'eligible'
                        WHEN n <= %(e)s + %(k)s THEN 'fresh'
                        WHEN n <= %(e)s + 2 * %(k)s THEN 'converted'
                        ELSE 'too_old' END
        FROM bench_reachable WHERE n <= %(e)s + 3 * %(k)s ORDER BY n
        """,
        {"e": e, "k": k},
    )
    cursor.execute(
        """
        INSERT INTO bench_cart_plan (customer_id, kind)
        SELECT NULL, 'anonymous' FROM generate_series(1, %(k)s)
        """,
        {"k": k},
    )
    # Not opted in on email (never asked, or opted out), and reachable customers beyond those
    # above whose cart has no lines.
    cursor.execute(
        """
        INSERT INTO bench_cart_plan (customer_id, kind)
        SELECT id, 'no_consent' FROM (
          SELECT c.id FROM customers_customer c
          WHERE c.erased_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM customers_consentstate s WHERE s.customer_id = c.id
                            AND s.channel_id = %(email)s AND s.status = 'opted_in')
          ORDER BY hashint8extended(c.id, 312), c.id LIMIT %(k)s) x
        """,
        {"email": email_id, "k": k},
    )
    cursor.execute(
        """
        INSERT INTO bench_cart_plan (customer_id, kind)
        SELECT id, 'empty' FROM bench_reachable
        WHERE n > %(e)s + 3 * %(k)s ORDER BY n LIMIT %(k)s
        """,
        {"e": e, "k": k},
    )
    cursor.execute(
        """
        INSERT INTO bench_cart_plan (customer_id, kind)
        SELECT id, 'erased' FROM customers_customer WHERE erased_at IS NOT NULL ORDER BY id
        """
    )
    cursor.execute("SELECT count(*) FROM bench_cart_plan")
    return cursor.fetchone()[0]


def _carts(cursor, size, web_id, variants, now) -> tuple[int, int]:
    cursor.execute(
        """
        INSERT INTO orders_cart (token, channel_id, customer_id, status, currency,
          external_reference, created_at, last_activity_at, closed_at, source)
        SELECT md5('bench-cart:' || p.n), %(web)s, p.customer_id,
          CASE WHEN p.kind = 'converted' THEN 'converted' ELSE 'open' END, 'EUR', '',
          t.at - interval '20 minutes', t.at,
          CASE WHEN p.kind = 'converted' THEN t.at + interval '5 minutes' END, %(source)s
        FROM bench_cart_plan p
        CROSS JOIN LATERAL (SELECT %(now)s::timestamptz - CASE p.kind
            WHEN 'fresh' THEN (2 + (hashint8extended(p.n, 321) & 2147483647) %% 9)
                              * interval '1 minute'
            WHEN 'too_old' THEN (96 + (hashint8extended(p.n, 321) & 2147483647) %% 145)
                                * interval '1 hour'
            ELSE (90 + (hashint8extended(p.n, 321) & 2147483647) %% 61) * interval '1 minute'
          END AS at) t
        ORDER BY p.n
        """,
        {"web": web_id, "now": now, "source": SOURCE},
    )
    carts = cursor.rowcount
    cursor.execute(
        """
        INSERT INTO orders_cartline (cart_id, variant_id, quantity, unit_price, added_at,
          updated_at)
        SELECT c.id, x.variant_id, 1 + (hashint8extended(p.n * 2 + k, 323) & 1), l.price,
          c.created_at + k * interval '5 minutes', c.created_at + k * interval '5 minutes'
        FROM bench_cart_plan p
        JOIN orders_cart c ON c.token = md5('bench-cart:' || p.n)
        CROSS JOIN LATERAL generate_series(1, 1 + (hashint8extended(p.n, 322) & 1)) AS k
        CROSS JOIN LATERAL (SELECT (%(variants)s::bigint[])[1 + (
            (hashint8extended(p.n, 324) & 2147483647) + (k - 1) * 7)
            %% cardinality(%(variants)s::bigint[])] AS variant_id) x
        JOIN catalog_channellisting l ON l.variant_id = x.variant_id AND l.channel_id = %(web)s
        WHERE p.kind <> 'empty'
        ORDER BY c.id, k
        """,
        {"variants": variants, "web": web_id},
    )
    return carts, cursor.rowcount


def make_campaign(now):
    """The active cart-abandoned campaign and the email rule (made once)."""
    from campaigns.models import (
        Campaign,
        CampaignStatus,
        CampaignStep,
        MessagingRule,
        OverCap,
        Purpose,
        Template,
        Trigger,
    )
    from campaigns.services.campaigns import campaign_activate
    from omni.models import Channel

    email = Channel.objects.get(code="email")
    start, end = quiet_hours_away_from(now)
    MessagingRule.objects.update_or_create(
        channel=email,
        defaults={
            "is_enabled": True,
            "consent_required": True,
            "frequency_cap": 3,
            "cap_period_hours": 168,
            "over_cap": OverCap.DEFER,
            "quiet_hours_start": start,
            "quiet_hours_end": end,
            "fallback_channel": None,
        },
    )
    template, _ = Template.objects.update_or_create(name=TEMPLATE, defaults=TEMPLATE_FIELDS)
    campaign, created = Campaign.objects.get_or_create(
        name=CAMPAIGN,
        defaults={
            "description": "The campaign benchmark's (bench/campaigns_data.py).",
            "trigger": Trigger.CART_ABANDONED,
            "purpose": Purpose.MARKETING,
            "status": CampaignStatus.DRAFT,
            "idle_minutes": 60,
            "lookback_hours": 72,
            "holdout_percent": 0,
            "reentry_cooldown_days": 7,
            "exit_on_purchase": True,
            "exit_on_cart_closed": True,
        },
    )
    if created:
        CampaignStep.objects.create(
            campaign=campaign, position=1, delay_minutes=0, channels="email", template=template
        )
    if campaign.status != CampaignStatus.ACTIVE:
        campaign = campaign_activate(campaign=campaign)  # checks the template's variables
    return campaign


def quiet_hours_away_from(now: datetime) -> tuple[dt_time, dt_time]:
    """Quiet hours (two hours) that start six hours after ``now`` in Paris: outside them in
    every time zone within four hours of Paris (the customers' zones are Paris or UTC) for
    the next few hours, so the check runs and defers nothing."""
    local = now.astimezone(ZoneInfo("Europe/Paris"))
    start = (local + timedelta(hours=6)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(hours=8)).time().replace(second=0, microsecond=0)
    return start, end


def cart_counts(now) -> dict:
    """Carts per kind as the data set defines them (by customer, status and age)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT
              count(*) FILTER (WHERE source = %(source)s),
              count(*) FILTER (WHERE status = 'open' AND customer_id IS NULL),
              count(*) FILTER (WHERE status = 'converted'),
              count(*) FILTER (WHERE status = 'open' AND last_activity_at > %(now)s::timestamptz
                                 - interval '60 minutes'),
              count(*) FILTER (WHERE status = 'open' AND last_activity_at < %(now)s::timestamptz
                                 - interval '72 hours'),
              count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM orders_cartline l
                                                 WHERE l.cart_id = orders_cart.id))
            FROM orders_cart
            """,
            {"source": SOURCE, "now": now},
        )
        total, anonymous, converted, fresh, too_old, empty = cursor.fetchone()
    return {
        "total": total,
        "anonymous": anonymous,
        "converted": converted,
        "fresh": fresh,
        "too_old": too_old,
        "without_lines": empty,
    }
