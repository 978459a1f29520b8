"""Clicks on a message's tracked links: ``clicked_at`` keeps the first click and
``last_clicked_at`` follows the latest, whatever order the clicks are recorded in; every click
is a ``link_clicked`` touchpoint naming the message (attribution reads them)."""

from datetime import timedelta

import pytest

from campaigns.models import Message
from campaigns.services.tracking import message_click_record
from customers.models import Touchpoint
from tests.campaigns.test_attribution import NOW, enrol, send

pytestmark = pytest.mark.django_db

URL = "https://shop.example.com/cart"


@pytest.fixture
def message(channels, make_campaign, make_customer):
    campaign = make_campaign(attribution_window_hours=48)
    enrolment = enrol(campaign, make_customer(), NOW - timedelta(days=5))
    return send(enrolment, channels.email, NOW - timedelta(days=5))


def click_times(message):
    message.refresh_from_db()
    return message.clicks, message.clicked_at, message.last_clicked_at


def test_the_first_click_and_the_latest_click_are_both_kept(message):
    first, second, third = (NOW - timedelta(days=4), NOW - timedelta(hours=3), NOW)

    assert message_click_record(message_id=message.pk, url=URL, at=first) is True
    assert click_times(message) == (1, first, first)
    assert message_click_record(message_id=message.pk, url=URL, at=second) is True
    assert click_times(message) == (2, first, second)
    assert message_click_record(message_id=message.pk, url=URL, at=third) is True
    assert click_times(message) == (3, first, third)
    assert list(
        Touchpoint.objects.filter(customer_id=message.customer_id, kind="link_clicked")
        .order_by("occurred_at")
        .values_list("occurred_at", "properties__message")
    ) == [(first, message.pk), (second, message.pk), (third, message.pk)]


def test_a_click_recorded_late_never_moves_the_latest_click_back(message):
    early, middle, late = (NOW - timedelta(days=2), NOW - timedelta(days=1), NOW)
    message_click_record(message_id=message.pk, url=URL, at=middle)
    message_click_record(message_id=message.pk, url=URL, at=late)

    # An earlier click arrives last (a queued app event): it becomes the first click.
    message_click_record(message_id=message.pk, url=URL, at=early)
    assert click_times(message) == (3, early, late)
    # One between the two changes neither.
    message_click_record(message_id=message.pk, url=URL, at=middle + timedelta(hours=1))
    assert click_times(message) == (4, early, late)


def test_a_message_clicked_before_the_latest_click_was_kept_starts_from_its_first(message):
    clicked = NOW - timedelta(hours=5)
    Message.objects.filter(pk=message.pk).update(clicked_at=clicked, clicks=1)

    message_click_record(message_id=message.pk, url=URL, at=clicked - timedelta(hours=1))
    assert click_times(message) == (2, clicked - timedelta(hours=1), clicked)
    message_click_record(message_id=message.pk, url=URL, at=NOW)
    assert click_times(message) == (3, clicked - timedelta(hours=1), NOW)
