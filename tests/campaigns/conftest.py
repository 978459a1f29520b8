"""Shared fixtures for campaign tests: the messaging channels with their rules, customers
with addresses and consent made through the customer services, a template with every
rendition, and campaigns with steps.

Modules add their own fixtures in their own files; this one stays small and stable.
"""

from datetime import time

import pytest

from campaigns.models import (
    Campaign,
    CampaignStatus,
    CampaignStep,
    MessagingRule,
    Purpose,
    Template,
    Trigger,
)
from customers.identifiers import Identifier
from customers.services import consent_record, customer_create
from omni.models import Channel, ChannelKind
from tests.factories import ChannelFactory


@pytest.fixture
def channels(db):
    """``channels.email/sms/push/social/web/pos``: the default channels (seeded by the omni
    migration; made again if a test flushed them)."""

    class Channels:
        pass

    c = Channels()
    c.email = ChannelFactory(code="email", name="Email", kind=ChannelKind.EMAIL, currency="")
    c.sms = ChannelFactory(code="sms", name="SMS", kind=ChannelKind.SMS, currency="")
    c.push = ChannelFactory(code="push", name="Push", kind=ChannelKind.PUSH, currency="")
    c.social = ChannelFactory(
        code="social-dm", name="Social messages", kind=ChannelKind.SOCIAL_DM, currency=""
    )
    c.web = ChannelFactory(code="web", name="Web shop", kind=ChannelKind.WEB, currency="EUR")
    c.pos = ChannelFactory(code="store", name="Stores (POS)", kind=ChannelKind.STORE_POS)
    return c


@pytest.fixture
def rules(channels):
    """Rules with no cap and no quiet hours on every channel; tests tighten what they test."""

    class Rules:
        pass

    r = Rules()
    for name, channel in [
        ("email", channels.email),
        ("sms", channels.sms),
        ("push", channels.push),
        ("social", channels.social),
    ]:
        rule, _ = MessagingRule.objects.update_or_create(
            channel=channel,
            defaults={
                "is_enabled": True,
                "consent_required": True,
                "frequency_cap": 0,
                "quiet_hours_start": None,
                "quiet_hours_end": None,
                "fallback_channel": None,
            },
        )
        setattr(r, name, rule)
    return r


QUIET = (time(21, 0), time(8, 0))


@pytest.fixture
def make_customer(channels):
    """``make_customer(email=..., phone=..., opt_in=("email", "sms"), time_zone=...)``."""
    counter = {"n": 0}

    def _make(
        *,
        email: str | None = "auto",
        phone: str | None = None,
        opt_in=("email",),
        opt_out=(),
        time_zone: str = "Europe/Paris",
        first_name: str = "Camille",
    ):
        counter["n"] += 1
        identifiers = []
        if email == "auto":
            email = f"customer{counter['n']}@example.com"
        if email:
            identifiers.append(Identifier("email", email))
        if phone:
            identifiers.append(Identifier("phone", phone))
        if not identifiers:
            identifiers.append(Identifier("loyalty_card", f"LC{counter['n']:06d}"))
        customer = customer_create(
            data={"first_name": first_name, "last_name": "Martin", "time_zone": time_zone},
            identifiers=identifiers,
            source="test",
        )
        for code in opt_in:
            consent_record(
                customer=customer,
                channel=Channel.objects.get(code=code),
                status="opted_in",
                source="test",
            )
        for code in opt_out:
            consent_record(
                customer=customer,
                channel=Channel.objects.get(code=code),
                status="opted_out",
                source="test",
            )
        return customer

    return _make


@pytest.fixture
def template(db):
    return Template.objects.create(
        name="Cart reminder",
        email_subject="{{ customer.first_name }}, your cart is waiting",
        email_html="<p>Hello {{ customer.first_name }}</p>",
        email_text="Hello {{ customer.first_name }}",
        sms_text="{{ customer.first_name }}, your cart is waiting",
        push_title="Your cart",
        push_body="Your cart is waiting",
        social_text="Your cart is waiting",
    )


@pytest.fixture
def make_campaign(template, rules):
    """``make_campaign(trigger=..., steps=[(delay_minutes, "email,sms"), ...], **fields)``:
    an active campaign with its steps, all on the shared template."""

    def _make(*, trigger=Trigger.CART_ABANDONED, steps=((0, "email"),), **fields):
        fields.setdefault("name", f"Campaign {Campaign.objects.count() + 1}")
        fields.setdefault("status", CampaignStatus.ACTIVE)
        fields.setdefault("purpose", Purpose.MARKETING)
        campaign = Campaign.objects.create(trigger=trigger, **fields)
        for position, (delay, codes) in enumerate(steps, 1):
            CampaignStep.objects.create(
                campaign=campaign,
                position=position,
                delay_minutes=delay,
                channels=codes,
                template=template,
            )
        return campaign

    return _make
