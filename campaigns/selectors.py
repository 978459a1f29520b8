"""Reads about campaigns that more than one caller needs (the API, the store pages, the
admin). Each returns a queryset with what its callers render, so a list costs a fixed number
of queries."""

from django.db.models import Prefetch, QuerySet

from campaigns.models import BackInStockSubscription, Campaign, CampaignStep, Enrolment, Message


def campaigns_with_steps() -> QuerySet:
    """Campaigns by name, with their sales channel and their steps (in order, with templates)."""
    return (
        Campaign.objects.select_related("sales_channel", "segment")
        .prefetch_related(
            Prefetch(
                "steps",
                queryset=CampaignStep.objects.select_related("template").order_by("position"),
            )
        )
        .order_by("name", "pk")
    )


def messages_for_customer(customer_id: int | None = None) -> QuerySet:
    """A customer's messages, newest first, with campaign, step and channel (every customer's
    when ``customer_id`` is None)."""
    messages = Message.objects.select_related("campaign", "step", "channel").order_by(
        "-created_at", "-pk"
    )
    return messages if customer_id is None else messages.filter(customer_id=customer_id)


def enrolments_for(*, customer_id: int | None = None, campaign_id: int | None = None) -> QuerySet:
    """Enrolments of a customer and/or a campaign, newest first, with their campaign, sales
    channel and converting order."""
    enrolments = Enrolment.objects.select_related(
        "campaign", "sales_channel", "converted_order"
    ).order_by("-enrolled_at", "-pk")
    if customer_id is not None:
        enrolments = enrolments.filter(customer_id=customer_id)
    if campaign_id is not None:
        enrolments = enrolments.filter(campaign_id=campaign_id)
    return enrolments


def subscriptions(*, channel_id: int | None = None) -> QuerySet:
    """Back-in-stock subscriptions, newest first, with variant and channel (of one sales
    channel when ``channel_id`` is given)."""
    rows = BackInStockSubscription.objects.select_related("variant", "channel").order_by(
        "-created_at", "-pk"
    )
    return rows if channel_id is None else rows.filter(channel_id=channel_id)


def subscriptions_waiting(
    *,
    variant_id: int | None = None,
    channel_id: int | None = None,
    customer_id: int | None = None,
) -> QuerySet:
    """Open subscriptions (not used yet), optionally of one variant, sales channel or customer
    (served by the partial index on waiting (variant, channel))."""
    rows = subscriptions(channel_id=channel_id).filter(notified_at__isnull=True)
    if variant_id is not None:
        rows = rows.filter(variant_id=variant_id)
    if customer_id is not None:
        rows = rows.filter(customer_id=customer_id)
    return rows
