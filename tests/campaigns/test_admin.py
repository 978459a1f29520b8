"""The campaigns admin: changelists that stay a fixed number of queries, messaging rules and
templates refused with the field's message, campaigns and their steps checked against the
channels and templates, the activate and pause actions (and the services behind them), the
read-only records, the retargeting audience export and the pages other modules provide."""

import hashlib
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import (
    Attribution,
    AttributionWindow,
    BackInStockSubscription,
    Campaign,
    CampaignStatus,
    CampaignStep,
    Message,
    MessageStatus,
    MessagingRule,
    Purpose,
    SignageScan,
    Template,
    Trigger,
)
from campaigns.services.campaigns import campaign_activate, campaign_pause
from customers.models import Segment
from omni.exceptions import Conflict, ValidationFailed
from tests.campaigns.test_attribution import enrol, make_order, send
from tests.factories import LocationFactory, VariantFactory

pytestmark = pytest.mark.django_db

# A changelist costs at most this many queries, however many rows it shows.
MAX_LIST_QUERIES = 14


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def url(model, view="changelist", *args):
    return reverse(f"admin:campaigns_{model}_{view}", args=args)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def queries_for(client, address) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(address)
    assert response.status_code == 200
    return len(captured)


def assert_fixed_queries(client, address, add_rows):
    """The page costs the same number of queries (and few) before and after ``add_rows()``."""
    before = queries_for(client, address)
    add_rows()
    after = queries_for(client, address)
    assert after == before
    assert after <= MAX_LIST_QUERIES


# --- Messaging rules --------------------------------------------------------------------------


def rule_data(**changes):
    data = {
        "is_enabled": "on",
        "consent_required": "on",
        "frequency_cap": "3",
        "cap_period_hours": "168",
        "over_cap": "defer",
        "quiet_hours_start": "",
        "quiet_hours_end": "",
        "fallback_channel": "",
        "attribute_on": "click",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_messaging_rule_list(admin_client, rules):
    response = admin_client.get(url("messagingrule"))
    assert response.status_code == 200
    assert [r.channel.code for r in response.context["cl"].result_list] == [
        "email",
        "push",
        "sms",
        "social-dm",
    ]
    assert queries_for(admin_client, url("messagingrule")) <= MAX_LIST_QUERIES


def test_messaging_rule_form_refuses_half_quiet_hours(admin_client, rules):
    response = admin_client.post(
        url("messagingrule", "change", rules.sms.pk), rule_data(quiet_hours_start="21:00")
    )

    assert response.status_code == 200
    # The check constraint's message, once.
    assert response.context["adminform"].form.errors == {
        "__all__": [
            "Give both ends of the quiet hours, or neither.",
        ]
    }
    rules.sms.refresh_from_db()
    assert (rules.sms.quiet_hours_start, rules.sms.frequency_cap) == (None, 0)


def test_messaging_rule_form_refuses_a_fallback_to_itself(admin_client, rules, channels):
    response = admin_client.post(
        url("messagingrule", "change", rules.sms.pk),
        rule_data(fallback_channel=str(channels.sms.pk)),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "fallback_channel": ["A channel cannot fall back to itself."]
    }
    rules.sms.refresh_from_db()
    assert rules.sms.fallback_channel_id is None


def test_messaging_rule_form_saves_valid_rules(admin_client, rules, channels):
    response = admin_client.post(
        url("messagingrule", "change", rules.sms.pk),
        rule_data(
            quiet_hours_start="21:00",
            quiet_hours_end="08:00",
            fallback_channel=str(channels.email.pk),
            attribute_on="delivery",
            frequency_cap="2",
        ),
    )

    assert response.status_code == 302
    rules.sms.refresh_from_db()
    assert (
        f"{rules.sms.quiet_hours_start:%H:%M}",
        f"{rules.sms.quiet_hours_end:%H:%M}",
        rules.sms.fallback_channel_id,
        rules.sms.attribute_on,
        rules.sms.frequency_cap,
    ) == ("21:00", "08:00", channels.email.pk, "delivery", 2)
    assert admin_client.get(url("messagingrule", "delete", rules.sms.pk)).status_code == 403


# --- Templates --------------------------------------------------------------------------------


def template_data(**changes):
    data = {
        "name": "Back in stock",
        "description": "",
        "email_subject": "{{ customer.first_name }}, it is back",
        "email_html": "<p>Hello {{ customer.first_name }}</p>",
        "email_text": "Hello {{ customer.first_name }}",
        "sms_text": "{{ customer.first_name }}, your cart is waiting",
        "push_title": "",
        "push_body": "",
        "social_text": "",
    }
    data.update(changes)
    return data


def test_template_form_refuses_unknown_variables_and_bad_syntax(admin_client, db):
    response = admin_client.post(
        url("template", "add"),
        template_data(sms_text="Hi {{ customer.shoe_size }}", email_html="{% if %}x"),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "email_html": ["Line 1: Unexpected end of expression in if tag."],
        "sms_text": [
            "Line 1: unknown variable “customer.shoe_size”: customer has city, first_name, "
            "language, last_name, name."
        ],
    }
    assert "customer.shoe_size" in response.content.decode()
    assert not Template.objects.filter(name="Back in stock").exists()


def test_template_form_saves_a_good_template(admin_client, db):
    response = admin_client.post(url("template", "add"), template_data())

    assert response.status_code == 302
    template = Template.objects.get(name="Back in stock")
    assert template.sms_text == "{{ customer.first_name }}, your cart is waiting"


def test_template_page_shows_sms_length_and_links_to_the_preview(admin_client, template):
    response = admin_client.get(url("template", "change", template.pk))

    html = response.content.decode()
    assert response.status_code == 200
    # Braces are in GSM-7's extension table: 2 each.
    assert "51 characters in GSM-7, 1 segment as written" in html
    preview = reverse("admin:campaigns_template_preview", args=[template.pk])
    assert f'href="{preview}"' in html
    assert "customer.first_name" in html  # the variables a template may use


def test_template_preview_page_is_wired(admin_client, template):
    response = admin_client.get(reverse("admin:campaigns_template_preview", args=[template.pk]))
    assert response.status_code == 200


def test_template_list(admin_client, template, make_campaign):
    make_campaign(steps=((0, "email"), (60, "sms")))
    response = admin_client.get(url("template"))
    assert response.status_code == 200
    assert [(t.name, t.step_count) for t in response.context["cl"].result_list] == [
        ("Cart reminder", 2)
    ]

    def more():
        for n in range(5):
            Template.objects.create(name=f"T{n}", sms_text="Hi")

    assert_fixed_queries(admin_client, url("template"), more)
    response = admin_client.get(url("template") + "?rendition=email")
    assert [t.name for t in response.context["cl"].result_list] == ["Cart reminder"]


# --- Campaigns --------------------------------------------------------------------------------


def campaign_data(template, *, steps=(("1", "0", "email, sms"),), **changes):
    data = {
        "name": "Winter reminder",
        "description": "",
        "trigger": "cart_abandoned",
        "purpose": "marketing",
        "segment": "",
        "sales_channel": "",
        "holdout_percent": "10",
        "idle_minutes": "60",
        "lookback_hours": "72",
        "winback_days": "90",
        "min_quantity": "1",
        "broadcast_at_0": "",
        "broadcast_at_1": "",
        "exit_on_purchase": "on",
        "exit_on_cart_closed": "on",
        "exit_on_sold_out": "on",
        "reentry_cooldown_days": "7",
        "attribution_window_hours": "72",
        "starts_at_0": "",
        "starts_at_1": "",
        "ends_at_0": "",
        "ends_at_1": "",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "attribution_windows-TOTAL_FORMS": "0",
        "attribution_windows-INITIAL_FORMS": "0",
        "attribution_windows-MIN_NUM_FORMS": "0",
        "attribution_windows-MAX_NUM_FORMS": "1000",
    }
    for i, (position, delay, codes) in enumerate(steps):
        data.update(
            {
                f"steps-{i}-position": position,
                f"steps-{i}-delay_minutes": delay,
                f"steps-{i}-channels": codes,
                f"steps-{i}-template": str(template.pk),
            }
        )
    data.update(changes)
    return data


def step_errors(response):
    formset = next(
        f for f in response.context["inline_admin_formsets"] if f.formset.prefix == "steps"
    )
    return [form.errors for form in formset.formset.forms]


def test_campaign_add_with_steps(admin_client, template, rules, channels):
    response = admin_client.post(
        url("campaign", "add"),
        campaign_data(
            template,
            steps=(("1", "0", " email ,sms"), ("2", "1440", "push")),
            **{
                "attribution_windows-TOTAL_FORMS": "1",
                "attribution_windows-0-channel": str(channels.sms.pk),
                "attribution_windows-0-hours": "24",
            },
        ),
    )

    assert response.status_code == 302
    campaign = Campaign.objects.get(name="Winter reminder")
    assert campaign.status == CampaignStatus.DRAFT
    assert list(campaign.steps.values_list("position", "delay_minutes", "channels")) == [
        (1, 0, "email, sms"),
        (2, 1440, "push"),
    ]
    assert list(
        AttributionWindow.objects.filter(campaign=campaign).values_list("channel__code", "hours")
    ) == [("sms", 24)]


def test_campaign_steps_refuse_unknown_channels(admin_client, template, rules, channels):
    response = admin_client.post(
        url("campaign", "add"),
        campaign_data(template, steps=(("1", "0", "email, fax, web"), ("2", "0", "sms, sms"))),
    )

    assert response.status_code == 200
    assert step_errors(response) == [
        {
            "channels": [
                "Not an active messaging channel: fax, web (use one of: email, push, sms, "
                "social-dm)."
            ]
        },
        {"channels": ["Named twice: sms."]},
    ]
    assert not Campaign.objects.filter(name="Winter reminder").exists()


def test_campaign_steps_refuse_a_template_without_the_first_channels_rendition(
    admin_client, rules, channels
):
    email_only = Template.objects.create(
        name="Email only", email_subject="Hello", email_text="Hello"
    )
    response = admin_client.post(
        url("campaign", "add"), campaign_data(email_only, steps=(("1", "0", "sms, email"),))
    )

    assert response.status_code == 200
    assert step_errors(response) == [
        {"template": ["The template “Email only” has no SMS rendition for the first channel, sms."]}
    ]
    assert not Campaign.objects.exists()


def test_saving_an_active_campaign_that_could_not_run_changes_nothing(
    admin_client, make_campaign, template
):
    campaign = make_campaign(name="Running")
    step = campaign.steps.get()
    data = campaign_data(
        template,
        name="Running renamed",
        steps=(("1", "0", "email"),),
        **{
            "steps-INITIAL_FORMS": "1",
            "steps-0-id": str(step.pk),
            "steps-0-campaign": str(campaign.pk),
            "steps-0-DELETE": "on",
        },
    )

    response = admin_client.post(url("campaign", "change", campaign.pk), data)

    assert response.status_code == 302
    assert messages_of(response) == [
        (
            "error",
            "Nothing was saved. Campaign “Running renamed” cannot run as it is. "
            "(steps: Add at least one step.)",
        )
    ]
    campaign.refresh_from_db()
    assert campaign.name == "Running"
    assert CampaignStep.objects.filter(pk=step.pk).exists()


HOLDOUT_TRANSACTIONAL = (
    "A transactional campaign tells every customer (a pickup notice, a receipt): its holdout "
    "must be 0 %."
)


def test_campaign_form_refuses_a_holdout_on_a_transactional_campaign(
    admin_client, template, rules, channels
):
    data = campaign_data(
        template, name="Pickup ready", trigger="pickup_ready", purpose="transactional"
    )
    assert data["holdout_percent"] == "10"

    response = admin_client.post(url("campaign", "add"), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"holdout_percent": [HOLDOUT_TRANSACTIONAL]}
    assert not Campaign.objects.exists()

    response = admin_client.post(url("campaign", "add"), {**data, "holdout_percent": "0"})

    assert response.status_code == 302
    campaign = Campaign.objects.get(name="Pickup ready")
    assert (campaign.purpose, campaign.holdout_percent) == ("transactional", 0)
    # A marketing campaign keeps its holdout.
    response = admin_client.post(
        url("campaign", "add"), {**data, "name": "Pickup nudge", "purpose": "marketing"}
    )
    assert response.status_code == 302
    assert Campaign.objects.get(purpose="marketing").holdout_percent == 10


def test_activation_refuses_a_holdout_on_a_transactional_campaign(make_campaign, db):
    campaign = make_campaign(
        name="Pickup",
        status=CampaignStatus.DRAFT,
        trigger=Trigger.PICKUP_READY,
        purpose=Purpose.TRANSACTIONAL,
        holdout_percent=10,
    )

    with pytest.raises(ValidationFailed) as refused:
        campaign_activate(campaign=campaign)

    assert refused.value.code == "campaign_not_ready"
    assert refused.value.extra == {"holdout_percent": [HOLDOUT_TRANSACTIONAL]}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT

    Campaign.objects.filter(pk=campaign.pk).update(holdout_percent=0)
    assert campaign_activate(campaign=campaign).status == CampaignStatus.ACTIVE


def test_campaign_list_shows_enrolled_counts_in_fixed_queries(
    admin_client, make_campaign, make_customer
):
    first = make_campaign(name="A first")
    customer = make_customer()
    now = timezone.now()
    for n in range(3):
        enrol(first, customer, now, subject=f"cart:{n}")
    make_campaign(name="B second", status=CampaignStatus.DRAFT)

    response = admin_client.get(url("campaign"))

    assert [(c.name, c.enrolled_count) for c in response.context["cl"].result_list] == [
        ("A first", 3),
        ("B second", 0),
    ]
    html = response.content.decode()
    assert f"?campaign__id__exact={first.pk}" in html
    assert reverse("admin:campaigns_dashboard_channels") in html
    assert reverse("admin:campaigns_audience_export") in html

    def more():
        for n in range(4):
            campaign = make_campaign(name=f"C{n}", segment=Segment.objects.create(name=f"S{n}"))
            enrol(campaign, customer, now)

    assert_fixed_queries(admin_client, url("campaign"), more)


# --- Activation and pause ---------------------------------------------------------------------


def run_action(client, action, *campaigns):
    return client.post(
        url("campaign"),
        {"action": action, ACTION_CHECKBOX_NAME: [str(c.pk) for c in campaigns]},
    )


def test_activate_action_says_what_happened(admin_client, make_campaign, template):
    ready = make_campaign(name="Ready", status=CampaignStatus.DRAFT)
    empty = make_campaign(name="Empty", status=CampaignStatus.DRAFT, steps=())
    broadcast = make_campaign(
        name="Broadcast", status=CampaignStatus.PAUSED, trigger=Trigger.BROADCAST
    )
    running = make_campaign(name="Running")

    response = run_action(admin_client, "activate", ready, empty, broadcast, running)

    assert response.status_code == 302
    assert messages_of(response) == [
        ("success", "Activated 1 campaign: they enrol and send from now on."),
        (
            "warning",
            "3 refused: "
            "Broadcast: Campaign “Broadcast” cannot run as it is. (segment: A broadcast needs "
            "a segment.; broadcast_at: A broadcast needs the time it is sent.); "
            "Empty: Campaign “Empty” cannot run as it is. (steps: Add at least one step.); "
            "Running: Campaign “Running” is already active.",
        ),
    ]
    assert dict(Campaign.objects.values_list("name", "status")) == {
        "Ready": "active",
        "Empty": "draft",
        "Broadcast": "paused",
        "Running": "active",
    }


def test_activation_refuses_a_step_whose_template_has_problems(make_campaign, template, channels):
    campaign = make_campaign(name="Bad", status=CampaignStatus.DRAFT)
    Template.objects.filter(pk=template.pk).update(sms_text="{{ customer.shoe_size }}")
    campaign.steps.update(channels="fax, email")

    with pytest.raises(ValidationFailed) as refused:
        campaign_activate(campaign=campaign)

    assert refused.value.code == "campaign_not_ready"
    assert refused.value.extra == {
        "step 1": [
            "Not an active messaging channel: fax (use one of: email, push, sms, social-dm).",
            "The template “Cart reminder”, SMS text: Line 1: unknown variable "
            "“customer.shoe_size”: customer has city, first_name, language, last_name, name.",
        ]
    }
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_activation_refuses_an_ended_campaign_and_inactive_channels(make_campaign, channels, rules):
    campaign = make_campaign(
        name="Over",
        status=CampaignStatus.DRAFT,
        starts_at=timezone.now() - timedelta(days=10),
        ends_at=timezone.now() - timedelta(minutes=1),
    )
    channels.email.is_active = False
    channels.email.save()

    with pytest.raises(ValidationFailed) as refused:
        campaign_activate(campaign=campaign)

    assert set(refused.value.extra) == {"ends_at", "step 1"}
    assert refused.value.extra["step 1"] == [
        "Not an active messaging channel: email (use one of: push, sms, social-dm)."
    ]


def test_broadcast_with_segment_and_time_activates(make_campaign, db):
    campaign = make_campaign(
        status=CampaignStatus.DRAFT,
        trigger=Trigger.BROADCAST,
        segment=Segment.objects.create(name="Everyone"),
        broadcast_at=timezone.now() + timedelta(hours=1),
    )
    assert campaign_activate(campaign=campaign).status == CampaignStatus.ACTIVE
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE


def test_activation_refuses_steps_not_numbered_from_one_without_gaps(make_campaign):
    campaign = make_campaign(status=CampaignStatus.DRAFT, steps=((0, "email"), (60, "sms")))
    CampaignStep.objects.filter(campaign=campaign, position=2).update(position=3)

    with pytest.raises(ValidationFailed) as refused:
        campaign_activate(campaign=campaign)

    assert refused.value.extra["steps"] == ["Number the steps 1, 2, 3 … without gaps (now 1, 3)."]
    CampaignStep.objects.filter(campaign=campaign, position=3).update(position=2)
    assert campaign_activate(campaign=campaign).status == CampaignStatus.ACTIVE


def test_activation_refuses_a_broadcast_whose_time_is_past_its_look_back(make_campaign, db):
    campaign = make_campaign(
        status=CampaignStatus.DRAFT,
        trigger=Trigger.BROADCAST,
        segment=Segment.objects.create(name="Everyone"),
        broadcast_at=timezone.now() - timedelta(days=3),
        lookback_hours=24,
    )

    with pytest.raises(ValidationFailed) as refused:
        campaign_activate(campaign=campaign)

    assert set(refused.value.extra) == {"broadcast_at"}
    assert "is more than 24 h (the look-back) in the past" in refused.value.extra["broadcast_at"][0]


def test_pause_action_and_service(admin_client, make_campaign):
    running = make_campaign(name="Running")
    draft = make_campaign(name="Draft", status=CampaignStatus.DRAFT)

    response = run_action(admin_client, "pause", running, draft)

    assert messages_of(response) == [
        (
            "success",
            "Paused 1 campaign: nothing is enrolled or sent until they are activated again.",
        ),
        ("warning", "1 refused: Draft: Campaign “Draft” is not active (draft)."),
    ]
    running.refresh_from_db()
    assert running.status == CampaignStatus.PAUSED
    with pytest.raises(Conflict) as refused:
        campaign_pause(campaign=running)
    assert refused.value.code == "campaign_not_active"
    with pytest.raises(Conflict) as refused:
        campaign_activate(campaign=make_campaign(name="Live"))
    assert refused.value.code == "campaign_already_active"


# --- Records the tasks write ------------------------------------------------------------------


@pytest.fixture
def outbox(make_campaign, make_customer, channels):
    """Two customers in a campaign, with messages (one clicked) and an attributed order."""

    class Outbox:
        pass

    o = Outbox()
    o.campaign = make_campaign(name="Cart", holdout_percent=10)
    now = timezone.now()
    o.ann = make_customer(email="ann@example.com")
    o.ben = make_customer(email="ben@example.com")
    o.ann_in = enrol(o.campaign, o.ann, now - timedelta(hours=5), subject="cart:11")
    o.ben_in = enrol(o.campaign, o.ben, now - timedelta(hours=4), subject="cart:12", holdout=True)
    o.message = send(
        o.ann_in,
        channels.email,
        now - timedelta(hours=3),
        clicked_at=now - timedelta(hours=2),
    )
    o.order = make_order(o.ann, channels.web, now - timedelta(hours=1))
    o.channels = channels
    return o


def test_enrolment_list_search_and_filters(admin_client, outbox):
    base = url("enrolment")
    response = admin_client.get(base)
    assert [e.pk for e in response.context["cl"].result_list] == [
        outbox.ben_in.pk,
        outbox.ann_in.pk,
    ]
    for term, expected in [
        (f"#{outbox.ann.pk}", [outbox.ann_in.pk]),
        (str(outbox.ben.pk), [outbox.ben_in.pk]),
        ("cart:11", [outbox.ann_in.pk]),
        ("BEN@example.com", [outbox.ben_in.pk]),
        ("nobody@example.com", []),
    ]:
        response = admin_client.get(base, {"q": term})
        assert [e.pk for e in response.context["cl"].result_list] == expected, term
    response = admin_client.get(base, {"holdout__exact": "1"})
    assert [e.pk for e in response.context["cl"].result_list] == [outbox.ben_in.pk]
    response = admin_client.get(base, {"campaign__id__exact": str(outbox.campaign.pk)})
    assert len(response.context["cl"].result_list) == 2
    assert admin_client.get(url("enrolment", "change", outbox.ann_in.pk)).status_code == 200
    assert admin_client.get(url("enrolment", "add")).status_code == 403


@pytest.mark.parametrize("model", ["enrolment", "message", "backinstocksubscription"])
def test_searching_non_ascii_digits_or_a_huge_number_finds_nothing(admin_client, outbox, model):
    # "²".isdigit() and "٣".isdigit() are True, but int() refuses them; 19 digits overflow
    # a bigint: none is an id, so none is searched as one.
    BackInStockSubscription.objects.create(
        customer=outbox.ann,
        variant=VariantFactory(),
        channel=outbox.channels.web,
        source="web",
        created_at=timezone.now(),
    )
    for term in ("²", "٣", "#²", "#٣", "1" * 19, f"#{'9' * 19}"):
        response = admin_client.get(url(model), {"q": term})
        assert response.status_code == 200, term
        assert list(response.context["cl"].result_list) == [], term


def test_enrolment_list_queries_are_fixed(admin_client, outbox, make_customer):
    def more():
        for n in range(5):
            enrol(outbox.campaign, make_customer(), timezone.now(), subject=f"cart:{100 + n}")

    assert_fixed_queries(admin_client, url("enrolment"), more)


def test_message_list_filters_and_fixed_queries(admin_client, outbox, make_customer):
    base = url("message")
    response = admin_client.get(base, {"status__exact": MessageStatus.SENT})
    assert [m.pk for m in response.context["cl"].result_list] == [outbox.message.pk]
    response = admin_client.get(base, {"status__exact": MessageStatus.SUPPRESSED})
    assert list(response.context["cl"].result_list) == []
    held = Message.objects.create(
        enrolment=outbox.ben_in,
        campaign=outbox.campaign,
        step=outbox.message.step,
        customer=outbox.ben,
        status=MessageStatus.SUPPRESSED,
        reason="holdout",
        created_at=outbox.message.created_at - timedelta(days=10),
    )
    response = admin_client.get(base, {"reason": "holdout"})
    assert [m.pk for m in response.context["cl"].result_list] == [held.pk]
    response = admin_client.get(base, {"reason": "capped"})
    assert list(response.context["cl"].result_list) == []
    response = admin_client.get(base, {"channel__id__exact": str(outbox.channels.email.pk)})
    assert [m.pk for m in response.context["cl"].result_list] == [outbox.message.pk]
    response = admin_client.get(base, {"q": str(outbox.message.pk)})
    assert [m.pk for m in response.context["cl"].result_list] == [outbox.message.pk]
    # The creation range filter (the held message is ten days older than the sent one).
    # As the filter's own links write them: midnights in the current time zone.
    day = timezone.localtime(outbox.message.created_at).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    response = admin_client.get(
        base,
        {
            "created_at__gte": str(day - timedelta(days=1)),
            "created_at__lt": str(day + timedelta(days=1)),
        },
    )
    assert [m.pk for m in response.context["cl"].result_list] == [outbox.message.pk]
    response = admin_client.get(
        base,
        {
            "created_at__gte": str(day - timedelta(days=30)),
            "created_at__lt": str(day + timedelta(days=1)),
        },
    )
    assert {m.pk for m in response.context["cl"].result_list} == {outbox.message.pk, held.pk}
    assert admin_client.get(url("message", "change", outbox.message.pk)).status_code == 200

    def more():
        for n in range(5):
            enrolment = enrol(outbox.campaign, make_customer(), timezone.now(), subject=f"c{n}")
            send(enrolment, outbox.channels.email, timezone.now())

    assert_fixed_queries(admin_client, base, more)


def test_attribution_list(admin_client, outbox, make_customer):
    from campaigns.services.attribution import attributions_compute

    assert attributions_compute() == 1
    response = admin_client.get(url("attribution"), {"q": outbox.order.number.lower()})
    assert [a.order_id for a in response.context["cl"].result_list] == [outbox.order.pk]
    assert outbox.order.number in response.content.decode()
    attribution = Attribution.objects.get()
    assert admin_client.get(url("attribution", "change", attribution.pk)).status_code == 200

    def more():
        for _ in range(4):
            customer = make_customer()
            enrolment = enrol(outbox.campaign, customer, timezone.now() - timedelta(hours=2))
            send(
                enrolment,
                outbox.channels.email,
                timezone.now() - timedelta(hours=2),
                clicked_at=timezone.now() - timedelta(hours=1),
            )
            make_order(customer, outbox.channels.web, timezone.now() - timedelta(minutes=5))
        attributions_compute()

    assert_fixed_queries(admin_client, url("attribution"), more)


def test_subscription_and_signage_lists(admin_client, make_customer, channels):
    store = LocationFactory(code="paris", name="Paris")
    variants = [VariantFactory() for _ in range(2)]
    customer = make_customer()
    now = timezone.now()
    BackInStockSubscription.objects.create(
        customer=customer, variant=variants[0], channel=channels.web, source="web", created_at=now
    )
    SignageScan.objects.create(day=now.date(), store=store, variant=variants[0], scans=4)

    response = admin_client.get(url("backinstocksubscription"), {"notified": "no"})
    assert len(response.context["cl"].result_list) == 1
    response = admin_client.get(url("backinstocksubscription"), {"q": variants[1].sku})
    assert list(response.context["cl"].result_list) == []
    response = admin_client.get(url("signagescan"))
    html = response.content.decode()
    assert 'id="signage-sheet-form"' in html
    assert '<option value="paris">paris · Paris</option>' in html
    assert admin_client.get(url("backinstocksubscription", "add")).status_code == 403

    def more():
        for variant in variants[1:]:
            BackInStockSubscription.objects.create(
                customer=make_customer(),
                variant=variant,
                channel=channels.web,
                source="web",
                created_at=now,
            )
            SignageScan.objects.create(day=now.date(), store=store, variant=variant, scans=1)

    assert_fixed_queries(admin_client, url("backinstocksubscription"), lambda: None)
    before = queries_for(admin_client, url("signagescan"))
    more()
    assert queries_for(admin_client, url("signagescan")) == before


def test_signage_sheet_is_wired(admin_client, db):
    LocationFactory(code="lyon", name="Lyon")
    response = admin_client.get(reverse("admin:campaigns_signage_sheet_choose"), {"store": "lyon"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:campaigns_signage_sheet", args=["lyon"])
    assert admin_client.get(response["Location"]).status_code == 200


# --- Retargeting audience export and the app index --------------------------------------------


def test_audience_export_of_a_segment(admin_client, make_customer, channels):
    from tests.factories import ChannelFactory

    ChannelFactory(code="ads-audience", name="Ads audiences", kind="ads_audience", currency="")
    allowed = make_customer(email="Zoe@Example.com", opt_in=("email", "ads-audience"))
    make_customer(email="nope@example.com")  # no consent to ads audiences
    segment = Segment.objects.create(name="Everyone")
    address = reverse("admin:campaigns_audience_export")

    assert admin_client.get(address).status_code == 200
    response = admin_client.post(address, {"audience": "segment", "segment": ""})
    assert response.status_code == 200
    assert response.context["form"].errors == {"segment": ["Choose the segment to export."]}

    response = admin_client.post(address, {"audience": "segment", "segment": str(segment.pk)})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="audience-segment-{segment.pk}-'
    )
    body = b"".join(response.streaming_content).decode()
    assert body == (
        "email_sha256,phone_sha256\n" + hashlib.sha256(b"zoe@example.com").hexdigest() + ",\n"
    )
    assert allowed.pk


def test_audience_export_of_abandoned_carts(admin_client, channels):
    response = admin_client.post(
        reverse("admin:campaigns_audience_export"),
        {"audience": "abandoned_carts", "min_idle_minutes": "30"},
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith(
        'attachment; filename="audience-abandoned-carts-'
    )
    assert b"".join(response.streaming_content).decode() == "email_sha256,phone_sha256\n"


def test_audience_export_needs_the_customer_permission(client, django_user_model, db):
    user = django_user_model.objects.create_user(username="marketer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(user)
    address = reverse("admin:campaigns_audience_export")

    assert client.get(address).status_code == 403
    response = client.get(url("campaign"))
    assert address not in response.content.decode()

    user.user_permissions.add(Permission.objects.get(codename="view_customer"))
    assert client.get(address).status_code == 200


def test_app_index_links_the_dashboards(admin_client, db):
    response = admin_client.get(reverse("admin:app_list", args=["campaigns"]))
    html = response.content.decode()
    assert response.status_code == 200
    for name in ("dashboard_channels", "dashboard_campaigns", "audience_export"):
        assert f'href="{reverse(f"admin:campaigns_{name}")}"' in html
    assert MessagingRule._meta.verbose_name_plural.capitalize() in html


def test_add_and_change_pages_render(admin_client, make_campaign, rules, template):
    campaign = make_campaign(name="Shown")
    AttributionWindow.objects.create(campaign=campaign, channel=rules.sms.channel, hours=12)
    for address in (
        url("campaign", "add"),
        url("campaign", "change", campaign.pk),
        url("template", "add"),
        url("messagingrule", "add"),
        url("messagingrule", "change", rules.email.pk),
    ):
        response = admin_client.get(address)
        assert response.status_code == 200, address
    html = admin_client.get(url("campaign", "change", campaign.pk)).content.decode()
    assert 'name="steps-0-channels"' in html
    assert 'name="attribution_windows-0-hours"' in html


def test_an_active_campaign_past_its_end_may_still_be_edited(admin_client, make_campaign, template):
    ended = timezone.now() - timedelta(days=1)
    campaign = make_campaign(name="Summer", starts_at=ended - timedelta(days=30), ends_at=ended)
    step = campaign.steps.get()
    local = timezone.localtime(ended)
    start = timezone.localtime(ended - timedelta(days=30))
    data = campaign_data(
        template,
        name="Summer 2025",
        steps=(("1", "0", "email"),),
        **{
            "steps-INITIAL_FORMS": "1",
            "steps-0-id": str(step.pk),
            "steps-0-campaign": str(campaign.pk),
            "starts_at_0": f"{start:%Y-%m-%d}",
            "starts_at_1": f"{start:%H:%M:%S}",
            "ends_at_0": f"{local:%Y-%m-%d}",
            "ends_at_1": f"{local:%H:%M:%S}",
        },
    )

    response = admin_client.post(url("campaign", "change", campaign.pk), data)

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) == ("Summer 2025", CampaignStatus.ACTIVE)
    with pytest.raises(Conflict):
        campaign_activate(campaign=campaign)
    campaign_pause(campaign=campaign)
    with pytest.raises(ValidationFailed) as refused:
        campaign_activate(campaign=campaign)
    assert list(refused.value.extra) == ["ends_at"]


def test_a_campaign_that_enrolled_someone_keeps_itself_and_its_steps(
    admin_client, make_campaign, make_customer
):
    used = make_campaign(name="Used", steps=((0, "email"), (60, "sms")))
    enrol(used, make_customer(), timezone.now())
    unused = make_campaign(name="Unused", status=CampaignStatus.DRAFT)

    assert admin_client.get(url("campaign", "delete", used.pk)).status_code == 403
    page = admin_client.get(url("campaign", "change", used.pk))
    steps = next(f for f in page.context["inline_admin_formsets"] if f.opts.model is CampaignStep)
    assert steps.has_delete_permission is False
    actions = admin_client.get(url("campaign")).context["action_form"].fields["action"].choices
    assert "delete_selected" not in [name for name, _label in actions]
    response = admin_client.post(url("campaign", "delete", unused.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Campaign.objects.filter(pk=unused.pk).exists()
    assert Campaign.objects.filter(pk=used.pk).exists()
