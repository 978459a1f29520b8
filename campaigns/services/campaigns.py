"""Campaign status changes and the checks a campaign must pass to run.

``campaign_activate`` refuses a campaign that could not send: no steps, a broadcast without
its segment or its time, a transactional campaign with a holdout (it would never tell the
customers held out that their pickup is ready), a step on a channel that is unknown, inactive
or not one a campaign sends on, a step whose template has no rendition for the step's first
channel or has problems (``campaigns.rendering.template_problems``: syntax errors, unknown
variables). The admin runs the same checks when an active campaign is saved, so a running
campaign stays runnable; its form refuses a holdout on a transactional campaign on its field.
"""

from django.db import transaction
from django.utils import timezone

from campaigns.models import (
    SENDABLE_KINDS,
    Campaign,
    CampaignStatus,
    Purpose,
    Template,
    Trigger,
)
from omni.exceptions import Conflict, ValidationFailed
from omni.models import Channel

RENDITION_NAMES = {
    "email": "email (subject and HTML or text)",
    "sms": "SMS",
    "push": "push (body)",
    "social_dm": "social message",
}


def campaign_lock(campaign_id: int) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign_id)


def sendable_channels() -> dict[str, Channel]:
    """The channels a campaign step may name, by code: active messaging channels a campaign
    sends on (ads audiences are exported, not sent to)."""
    return {c.code: c for c in Channel.objects.filter(kind__in=SENDABLE_KINDS, is_active=True)}


def step_channel_problems(
    codes: list[str], channels: dict[str, Channel] | None = None
) -> list[str]:
    """What is wrong with a step's list of channel codes."""
    channels = sendable_channels() if channels is None else channels
    if not codes:
        return ["Name at least one messaging channel, e.g. 'email, sms'."]
    problems = []
    unknown = [code for code in codes if code not in channels]
    if unknown:
        known = ", ".join(sorted(channels)) or "none"
        problems.append(
            f"Not an active messaging channel: {', '.join(unknown)} (use one of: {known})."
        )
    repeated = sorted({code for code in codes if codes.count(code) > 1})
    if repeated:
        problems.append(f"Named twice: {', '.join(repeated)}.")
    return problems


def rendition_problem(template: Template, first_channel: Channel | None) -> str | None:
    """Why ``template`` cannot go out on a step's first channel (it has no rendition for it),
    or None."""
    if first_channel is None or template.has_rendition(first_channel.kind):
        return None
    return (
        f"The template “{template}” has no {RENDITION_NAMES[first_channel.kind]} "
        f"rendition for the first channel, {first_channel.code}."
    )


def step_template_problems(template: Template, first_channel: Channel | None) -> list[str]:
    """What keeps ``template`` from being sent on a step whose first channel is
    ``first_channel``: a missing rendition, problems in its fields."""
    from campaigns.rendering import template_problems

    problems = []
    missing = rendition_problem(template, first_channel)
    if missing:
        problems.append(missing)
    for field, messages in template_problems(template).items():
        label = Template._meta.get_field(field).verbose_name
        problems.extend(f"The template “{template}”, {label}: {message}" for message in messages)
    return problems


def holdout_problem(*, purpose: str | None, holdout_percent: int | None) -> str | None:
    """Why a campaign of ``purpose`` may not hold out ``holdout_percent`` of its customers, or
    None: a transactional message (a pickup notice, a receipt) is owed to every customer, so
    none is kept out to measure lift."""
    if purpose == Purpose.TRANSACTIONAL and holdout_percent:
        return (
            "A transactional campaign tells every customer (a pickup notice, a receipt): its "
            "holdout must be 0 %."
        )
    return None


def campaign_problems(
    campaign: Campaign, *, activating: bool = False, now=None
) -> dict[str, list[str]]:
    """Why ``campaign`` could not run, by field (``step N`` for a step); empty when it can.
    ``activating`` adds that a campaign past its end cannot be started (a running campaign
    that reached its end may still be edited)."""
    now = now or timezone.now()
    problems: dict[str, list[str]] = {}
    steps = list(campaign.steps.select_related("template").order_by("position"))
    if not steps:
        problems["steps"] = ["Add at least one step."]
    positions = [step.position for step in steps]
    if steps and positions != list(range(1, len(steps) + 1)):
        # Sending goes from step 1 to the next number: a gap or another start sends nothing.
        problems["steps"] = [
            f"Number the steps 1, 2, 3 … without gaps (now {', '.join(str(p) for p in positions)})."
        ]
    if campaign.trigger == Trigger.BROADCAST:
        if campaign.segment_id is None:
            problems["segment"] = ["A broadcast needs a segment."]
        if campaign.broadcast_at is None:
            problems["broadcast_at"] = ["A broadcast needs the time it is sent."]
        elif activating and campaign.broadcast_at < campaign.lookback_start(now):
            # Detection only takes a broadcast within its look-back: this one would never go.
            problems["broadcast_at"] = [
                f"The broadcast time {timezone.localtime(campaign.broadcast_at):%Y-%m-%d %H:%M} "
                f"is more than {campaign.lookback_hours} h (the look-back) in the past."
            ]
    holdout = holdout_problem(purpose=campaign.purpose, holdout_percent=campaign.holdout_percent)
    if holdout:
        problems["holdout_percent"] = [holdout]
    if activating and campaign.ends_at is not None and campaign.ends_at <= now:
        problems["ends_at"] = [
            f"The campaign ended on {timezone.localtime(campaign.ends_at):%Y-%m-%d %H:%M}."
        ]
    channels = sendable_channels()
    for step in steps:
        codes = step.channel_codes
        found = step_channel_problems(codes, channels)
        first = channels.get(codes[0]) if codes else None
        found += step_template_problems(step.template, first)
        if found:
            problems[f"step {step.position}"] = found
    return problems


def campaign_check(campaign: Campaign, *, activating: bool = False) -> None:
    """Raise ``ValidationFailed`` (code ``campaign_not_ready``) when ``campaign`` could not
    run, with the problems by field in ``extra``."""
    problems = campaign_problems(campaign, activating=activating)
    if problems:
        raise ValidationFailed(
            f"Campaign “{campaign}” cannot run as it is.",
            code="campaign_not_ready",
            extra=problems,
        )


@transaction.atomic
def campaign_activate(*, campaign: Campaign) -> Campaign:
    """Start (or resume) a draft or paused campaign that passes the checks."""
    campaign = campaign_lock(campaign.pk)
    if campaign.status == CampaignStatus.ACTIVE:
        raise Conflict(f"Campaign “{campaign}” is already active.", code="campaign_already_active")
    campaign_check(campaign, activating=True)
    campaign.status = CampaignStatus.ACTIVE
    campaign.save(update_fields=["status", "updated_at"])
    return campaign


@transaction.atomic
def campaign_pause(*, campaign: Campaign) -> Campaign:
    """Pause an active campaign: nothing is enrolled or sent until it is activated again
    (enrolments keep their place and resume then; messages already queued, a retry waiting
    for instance, wait too, and are checked again for consent, the exit condition and quiet
    hours before they go)."""
    campaign = campaign_lock(campaign.pk)
    if campaign.status != CampaignStatus.ACTIVE:
        raise Conflict(
            f"Campaign “{campaign}” is not active ({campaign.get_status_display().lower()}).",
            code="campaign_not_active",
        )
    campaign.status = CampaignStatus.PAUSED
    campaign.save(update_fields=["status", "updated_at"])
    return campaign
