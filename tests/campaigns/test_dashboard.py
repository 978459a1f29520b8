"""The dashboards: SVG chart helpers (titles, descriptions, values written out, escaping),
lift against the holdout, the channels and campaigns pages with exact figures, who may see
them, and "Refresh now"."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin import DateFieldListFilter
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.dashboard import Lift, bar_chart, donut_chart, funnel_chart, line_chart
from campaigns.models import (
    AudienceSnapshot,
    CampaignDailyStat,
    CampaignStatus,
    ChannelDailyStat,
)
from customers.models import CustomerChannelStat
from tests.campaigns.test_attribution import enrol, send

pytestmark = pytest.mark.django_db

CHANNELS_URL = "admin:campaigns_dashboard_channels"
CAMPAIGNS_URL = "admin:campaigns_dashboard_campaigns"
REFRESH_URL = "admin:campaigns_dashboard_refresh"


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def svg_texts(svg) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", str(svg))


# --- Chart helpers ----------------------------------------------------------------------------


def test_bar_chart_is_accessible_and_writes_its_values():
    svg = bar_chart(
        "c1",
        title="Orders per channel",
        desc="Web 12; Store 3",
        bars=[("Web", 12), ("Store", 3)],
        axis_label="Orders",
    )
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert 'role="img"' in svg
    assert 'aria-labelledby="c1-title c1-desc"' in svg
    assert '<title id="c1-title">Orders per channel</title>' in svg
    assert '<desc id="c1-desc">Web 12; Store 3</desc>' in svg
    # Title, labels and values, the axis ticks (0, half, max) and the axis label.
    assert svg_texts(svg) == [
        "Orders per channel",
        "Web",
        "12",
        "Store",
        "3",
        "0",
        "6",
        "12",
        "Orders",
    ]
    assert "<script" not in svg and "http://" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_bar_chart_escapes_labels_and_survives_zeros():
    svg = bar_chart(
        "c2",
        title='Sales <"&>',
        desc="none",
        bars=[("<b>Shop</b>", 0)],
        axis_label="Orders",
    )
    assert "<b>" not in svg
    assert "&lt;b&gt;Shop&lt;/b&gt;" in svg
    assert "Sales &lt;&quot;&amp;&gt;" in svg
    # No division by zero: one tick, 0.
    assert svg_texts(svg) == [
        "Sales &lt;&quot;&amp;&gt;",
        "&lt;b&gt;Shop&lt;/b&gt;",
        "0",
        "0",
        "Orders",
    ]


def test_line_chart_labels_days_values_and_totals():
    days = [timezone.localdate() - timedelta(days=n) for n in range(11, -1, -1)]
    svg = line_chart(
        "c3",
        title="Orders per day",
        desc="Daily orders",
        days=days,
        series=[("Web", [1, 0, 2, 0, 0, 0, 0, 0, 4, 0, 0, 3]), ("Store", [0] * 12)],
        y_label="Orders",
    )
    texts = svg_texts(svg)
    assert texts[:4] == ["Orders per day", "0", "2", "4"]  # the y axis ticks
    # A date every week, and the last day.
    assert texts[4:7] == [f"{days[0]:%d %b}", f"{days[7]:%d %b}", f"{days[11]:%d %b}"]
    assert "Day" in texts and "Orders" in texts
    assert "Web: 10 in 12 days, last day 3" in texts
    assert "Store: 0 in 12 days, last day 0" in texts
    assert svg.count("<polyline") == 2


def test_donut_chart_gives_values_and_shares():
    svg = donut_chart(
        "c4",
        title="Preferred channel",
        desc="Email 3; SMS 1",
        slices=[("Email", 3), ("SMS", 1)],
        center_label="customers",
    )
    texts = svg_texts(svg)
    assert texts == ["Preferred channel", "4", "customers", "Email: 3 (75.0%)", "SMS: 1 (25.0%)"]
    assert svg.count("stroke-dasharray") == 2
    empty = donut_chart("c5", title="None", desc="No data", slices=[("Email", 0)])
    assert svg_texts(empty) == ["None", "0", "", "Email: 0 (–)"]


def test_funnel_chart_gives_each_stage_and_its_share_of_the_first():
    svg = funnel_chart(
        "c6",
        title="Funnel",
        desc="…",
        stages=[("Enrolled", 200), ("Sent", 150), ("Clicked", 30), ("Converted", 0)],
    )
    assert svg_texts(svg) == [
        "Funnel",
        "Enrolled",
        "200",
        "Sent",
        "150 (75.0% of enrolled)",
        "Clicked",
        "30 (15.0% of enrolled)",
        "Converted",
        "0 (0.0% of enrolled)",
    ]


# --- Lift -------------------------------------------------------------------------------------


def test_lift_against_the_holdout():
    lift = Lift(treated=100, treated_converted=20, holdout=50, holdout_converted=5)
    assert (lift.treated_rate, lift.holdout_rate) == (0.2, 0.1)
    assert lift.points == pytest.approx(10.0)
    assert lift.relative == pytest.approx(1.0)
    assert lift.summary == "+10.0 points (+100%)"


def test_lift_needs_enough_data_in_both_groups():
    assert Lift(100, 20, 29, 5).summary == "not enough data (at least 30 per group)"
    assert Lift(29, 20, 100, 5).points is None
    assert Lift(100, 20, 0, 0).summary == "no holdout"
    never = Lift(40, 4, 40, 0)
    assert (never.points, never.relative, never.summary) == (10.0, None, "+10.0 points")


# --- Pages ------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def figures(channels, make_campaign):
    """Rollups of the last days: web and store orders, email messages; three customers seen on
    the web in the period (one of them also in a store), one seen on the web long ago."""
    today = timezone.localdate()
    now = timezone.now()
    for day, web_orders, web_revenue, web_active in [
        (today, 3, "1234.50", 2),
        (today - timedelta(days=1), 2, "100.00", 2),
    ]:
        ChannelDailyStat.objects.create(
            day=day,
            channel=channels.web,
            orders=web_orders,
            revenue=Decimal(web_revenue),
            active_customers=web_active,
            buyers=web_orders,
            refreshed_at=now,
        )
    ChannelDailyStat.objects.create(
        day=today - timedelta(days=40),  # outside the 30 days
        channel=channels.web,
        orders=99,
        revenue=Decimal("999.00"),
        refreshed_at=now - timedelta(days=40),
    )
    ChannelDailyStat.objects.create(
        day=today,
        channel=channels.pos,
        orders=1,
        revenue=Decimal("20.00"),
        active_customers=1,
        refreshed_at=now,
    )
    ChannelDailyStat.objects.create(
        day=today,
        channel=channels.email,
        messages_sent=40,
        messages_delivered=38,
        clicks=10,
        attributed_orders=4,
        attributed_revenue=Decimal("321.00"),
        refreshed_at=now,
    )
    from customers.models import Customer

    people = [Customer.objects.create(created_at=now) for _ in range(4)]
    for person in people[:3]:
        CustomerChannelStat.objects.create(
            customer=person,
            channel=channels.web,
            touchpoints=2,
            first_seen_at=now - timedelta(days=50),
            last_seen_at=now - timedelta(days=2),
        )
    CustomerChannelStat.objects.create(
        customer=people[0], channel=channels.pos, first_seen_at=now, last_seen_at=now
    )
    CustomerChannelStat.objects.create(
        customer=people[3],
        channel=channels.web,
        first_seen_at=now - timedelta(days=90),
        last_seen_at=now - timedelta(days=31),
    )
    AudienceSnapshot.objects.create(
        taken_at=now,
        customers=8,
        multichannel_customers=2,
        channels_used={"0": 1, "1": 5, "2": 2},
        preferred_channels={"email": 5, "none": 2, "sms": 1},
    )
    return channels


def test_channels_dashboard_shows_exact_figures(admin_client, figures):
    response = admin_client.get(reverse(CHANNELS_URL))

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="omni-chart"') == 9
    assert html.count("<title id=") == 9
    # Web: 3 customers seen in 30 days, 5 orders, 1,334.50, 5 / 3 orders per customer.
    assert (
        '<th scope="row">Web shop</th><td class="num">3</td><td class="num">5</td>'
        '<td class="num">1,334.50</td><td class="num">166.7%</td>'
    ) in html
    assert (
        '<th scope="row">Stores (POS)</th><td class="num">1</td><td class="num">1</td>'
        '<td class="num">20.00</td><td class="num">100.0%</td>'
    ) in html
    assert (
        '<th scope="row">Email</th><td class="num">40</td><td class="num">38</td>'
        '<td class="num">10</td><td class="num">25.0%</td><td class="num">4</td>'
        '<td class="num">321.00</td>'
    ) in html
    assert "25.0%</span>\n  of customers (2 of 8) used two or more sales channels" in html
    # The charts write the same figures.
    assert ">1,334.50</text>" in html
    assert ">166.7%</text>" in html
    assert "Web shop: 5 in 30 days, last day 3" in html  # orders per day
    # Active customers per day add up to 4 customer-days; 3 distinct customers in 30 days.
    assert "Web shop: 4 in 30 days, last day 2" in html
    assert "Email: 5 (62.5%)" in html
    assert "No preference: 2 (25.0%)" in html
    assert "2 channels: 2 (25.0%)" in html
    assert 'id="refresh-form"' in html
    assert "Figures refreshed" in html


def test_campaigns_dashboard_shows_funnels_and_lift(admin_client, figures, make_campaign):
    today = timezone.localdate()
    now = timezone.now()
    measured = make_campaign(name="Cart reminder", holdout_percent=40)
    young = make_campaign(name="Pickup ready")
    make_campaign(name="Old draft", status=CampaignStatus.DRAFT)
    for day, enrolled, held_out, converted, holdout_converted in [
        (today, 60, 25, 8, 1),
        (today - timedelta(days=3), 40, 15, 4, 1),
    ]:
        CampaignDailyStat.objects.create(
            day=day,
            campaign=measured,
            enrolled=enrolled,
            held_out=held_out,
            sent=enrolled - held_out,
            delivered=enrolled - held_out - 2,
            clicked=10,
            suppressed=1,
            converted=converted,
            holdout_converted=holdout_converted,
            revenue=Decimal("250.25"),
            refreshed_at=now,
        )

    response = admin_client.get(reverse(CAMPAIGNS_URL))

    assert response.status_code == 200
    html = response.content.decode()
    rows = response.context["dashboard"]["rows"]
    assert [row["campaign"].name for row in rows] == ["Cart reminder", "Pickup ready"]
    # 100 enrolled, 40 held out: 12 of 60 treated (20.0%) against 2 of 40 (5.0%).
    row = re.search(rf'<tr id="campaign-{measured.pk}">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r'<td class="num">(.*?)</td>', row)
    assert cells == [
        "100",
        "40",
        "60",
        "56",
        "20",
        "2",
        "12",
        "2",
        "500.50",
        '20.0% <span class="help">(n = 60)</span>',
        '5.0% <span class="help">(n = 40)</span>',
    ]
    assert "<td>+15.0 points (+300%)</td>" in row
    young_row = re.search(rf'<tr id="campaign-{young.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "<td>not enough data (at least 30 per group)</td>" in young_row
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="omni-chart" id="funnel-') == 2
    assert "Cart reminder: funnel of the enrolments not held out, last 30 days" in html
    assert ">56 (93.3% of enrolled)</text>" in html
    assert ">12 (20.0% of enrolled)</text>" in html


def test_dashboards_without_any_figures(admin_client, channels):
    for name in (CHANNELS_URL, CAMPAIGNS_URL):
        response = admin_client.get(reverse(name))
        assert response.status_code == 200
        assert "The figures have not been computed yet" in response.content.decode()
    assert "No audience snapshot yet" in admin_client.get(reverse(CHANNELS_URL)).content.decode()


def test_refresh_now_runs_the_rollups_and_says_what_it_did(admin_client, channels, make_campaign):
    make_campaign()
    response = admin_client.post(reverse(REFRESH_URL), {"next": reverse(CAMPAIGNS_URL)})

    assert response.status_code == 302
    assert response["Location"] == reverse(CAMPAIGNS_URL)
    today = timezone.localdate()
    from omni.models import Channel

    n = Channel.objects.count()
    assert messages_of(response) == [
        (
            "success",
            "Attributed 0 new orders. "
            f"Refreshed 30 days ({today - timedelta(days=29)} to {today}): "
            f"{n * 30:,} channel rows, 30 campaign rows; 0 customers, 0 on two or more sales "
            "channels.",
        )
    ]
    assert ChannelDailyStat.objects.count() == n * 30
    assert AudienceSnapshot.objects.count() == 1


def test_refresh_goes_back_to_a_dashboard_only(admin_client, channels):
    response = admin_client.post(reverse(REFRESH_URL), {"next": "https://elsewhere.example/"})
    assert response["Location"] == reverse(CHANNELS_URL)
    assert admin_client.get(reverse(REFRESH_URL)).status_code == 405


def test_anonymous_and_non_staff_users_are_sent_to_sign_in(client, django_user_model, channels):
    for name in (CHANNELS_URL, CAMPAIGNS_URL):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    user = django_user_model.objects.create_user(username="shopper", password="pw")
    client.force_login(user)
    for name in (CHANNELS_URL, CAMPAIGNS_URL, REFRESH_URL):
        response = client.post(reverse(name)) if name == REFRESH_URL else client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert ChannelDailyStat.objects.count() == 0


def test_staff_need_the_campaign_permissions(client, django_user_model, channels):
    user = django_user_model.objects.create_user(username="clerk", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(reverse(CHANNELS_URL)).status_code == 403
    assert client.get(reverse(CAMPAIGNS_URL)).status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    response = client.get(reverse(CHANNELS_URL))
    assert response.status_code == 200
    assert 'id="refresh-form"' not in response.content.decode()
    assert client.post(reverse(REFRESH_URL)).status_code == 403
    assert ChannelDailyStat.objects.count() == 0


# --- The message list behind the figures ------------------------------------------------------


def test_message_list_filters_creation_ranges_without_reading_every_date(
    admin_client, channels, make_campaign, make_customer
):
    """No date hierarchy (its DISTINCT over the dates reads every message on each view): a
    creation filter whose choices are ranges the created_at index serves."""
    campaign = make_campaign()
    customer = make_customer()
    now = timezone.now()
    recent, old = (
        send(enrol(campaign, customer, now - age, subject=f"cart:{n}"), channels.email, now - age)
        for n, age in enumerate((timedelta(days=1), timedelta(days=400)))
    )
    address = reverse("admin:campaigns_message_changelist")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(address)

    assert response.status_code == 200
    cl = response.context["cl"]
    assert cl.date_hierarchy is None
    assert [
        q["sql"]
        for q in queries.captured_queries
        if "DISTINCT" in q["sql"].upper() and "campaigns_message" in q["sql"]
    ] == []
    assert [m.pk for m in cl.result_list] == [old.pk, recent.pk]  # newest id first
    (created,) = [f for f in cl.filter_specs if isinstance(f, DateFieldListFilter)]
    assert created.field_path == "created_at"
    links = dict(created.links)
    assert list(links) == ["Any date", "Today", "Past 7 days", "This month", "This year"]
    assert set(links["Past 7 days"]) == {"created_at__gte", "created_at__lt"}

    response = admin_client.get(address, links["Past 7 days"])
    assert [m.pk for m in response.context["cl"].result_list] == [recent.pk]
