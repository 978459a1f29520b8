"""Sending: due steps become messages, messages go to their backend, exactly once.

Two phases, each its own short transaction, so several workers share the work:

1. ``steps_claim`` locks due enrolments with ``FOR UPDATE SKIP LOCKED`` (another worker takes
   the next ones), re-checks at send time the exit condition, the holdout, the channel (the
   customer's preferred one when the step lists it, then the step's order, then each
   channel's fallback) with its consent and address, the marketing frequency cap (each
   claimed customer's row locked with her enrolments, so two workers never both take the
   last slot) and quiet hours
   in the customer's time zone. It writes the outcome: a queued message, a suppressed one
   with its reason, or a deferral of the step; and moves the enrolment on. The message row is
   unique per (enrolment, step).
2. ``messages_deliver`` marks a batch of queued messages ``sending`` (skip locked, committed
   before any backend is called), renders them, hands them to their backend, and records
   sent or delivered, a retry with backoff for a transient error, or failed.

A worker that dies between the two phases leaves queued messages: the next run sends them
once. One that dies while sending leaves ``sending`` rows: after a lease they are sent again
only on a backend that dedupes by message id, and otherwise marked failed with an unknown
outcome for staff to look at, so a message is never sent twice.
"""

import logging
import time as _time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from campaigns.models import (
    SENDABLE_KINDS,
    Campaign,
    CampaignStatus,
    CampaignStep,
    Enrolment,
    EnrolmentStatus,
    Message,
    MessageStatus,
    OverCap,
    SuppressionReason,
    Trigger,
)
from customers.models import ConsentState, ConsentStatus, Customer, Identity, IdentityKind
from inventory.models import ChannelAvailability
from omni.db import bulk_update_values
from omni.models import Channel
from orders.models import Cart, CartStatus, Order, OrderStatus

from .common import candidate_channels, rules_by_channel

log = logging.getLogger(__name__)

ADDRESS_KINDS = {
    "email": IdentityKind.EMAIL,
    "sms": IdentityKind.PHONE,
    "push": IdentityKind.APP_DEVICE,
    "social_dm": IdentityKind.SOCIAL_HANDLE,
}
COUNTED = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.DELIVERED)
ENROLMENT_FIELDS = [
    "status",
    "exit_reason",
    "next_position",
    "due_at",
    "deferrals",
    "last_deferral",
    "finished_at",
]


@dataclass
class ClaimResult:
    claimed: int = 0
    queued: int = 0
    suppressed: dict = field(default_factory=lambda: defaultdict(int))
    deferred: dict = field(default_factory=lambda: defaultdict(int))
    exited: dict = field(default_factory=lambda: defaultdict(int))
    completed: int = 0


@dataclass
class DeliverResult:
    attempted: int = 0
    sent: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    suppressed: int = 0  # retries that may no longer go (opt-out, exit)


@dataclass
class SendResult:
    claimed: int = 0
    queued: int = 0
    suppressed: dict = field(default_factory=lambda: defaultdict(int))
    deferred: dict = field(default_factory=lambda: defaultdict(int))
    exited: dict = field(default_factory=lambda: defaultdict(int))
    completed: int = 0
    sent: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    recovered: int = 0
    abandoned: int = 0

    def add_claim(self, r: ClaimResult) -> None:
        self.claimed += r.claimed
        self.queued += r.queued
        self.completed += r.completed
        for mine, theirs in (
            (self.suppressed, r.suppressed),
            (self.deferred, r.deferred),
            (self.exited, r.exited),
        ):
            for key, n in theirs.items():
                mine[key] += n

    def add_deliver(self, r: DeliverResult) -> None:
        if r.suppressed:
            self.suppressed["at_retry"] += r.suppressed
        self.sent += r.sent
        self.delivered += r.delivered
        self.retrying += r.retrying
        self.failed += r.failed

    def as_dict(self) -> dict:
        return {
            "claimed": self.claimed,
            "queued": self.queued,
            "suppressed": dict(self.suppressed),
            "deferred": dict(self.deferred),
            "exited": dict(self.exited),
            "completed": self.completed,
            "sent": self.sent,
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
            "recovered": self.recovered,
            "abandoned": self.abandoned,
        }


# --- time --------------------------------------------------------------------------------


def quiet_until(start, end, tz_name: str, now: datetime) -> datetime | None:
    """The end of the quiet hours ``start``-``end`` (local times in ``tz_name``) when ``now``
    falls inside them, else None. Hours may span midnight (21:00-08:00)."""
    if start is None or end is None:
        return None
    tz = ZoneInfo(tz_name)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if start < end:
        inside, end_day = start <= t < end, local.date()
    else:
        inside = t >= start or t < end
        end_day = local.date() if t < end else local.date() + timedelta(days=1)
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


def _time_zone(tz: str, store_tz: str) -> str:
    for name in (tz, store_tz, settings.TIME_ZONE):
        if name:
            try:
                ZoneInfo(name)
                return name
            except (KeyError, ValueError):
                continue
    return "UTC"


# --- phase 1: claim due steps ------------------------------------------------------------


class _Batch:
    """What the checks of one claimed batch read, fetched with one query per kind."""

    def __init__(self, enrolments: list[Enrolment], now):
        self.now = now
        customer_ids = sorted({e.customer_id for e in enrolments})
        self.customers = {
            row[0]: row
            for row in Customer.objects.filter(pk__in=customer_ids).values_list(
                "pk",
                "time_zone",
                "home_store__time_zone",
                "preferred_channel_id",
                "last_purchase_at",
                "erased_at",
            )
        }
        self.consent = {
            (c, ch): status
            for c, ch, status in ConsentState.objects.filter(
                customer_id__in=customer_ids, occurred_at__lte=now
            ).values_list("customer_id", "channel_id", "status")
        }
        self.addresses: dict[tuple[int, str], str] = {}
        for c, kind, value in (
            Identity.objects.filter(customer_id__in=customer_ids, kind__in=ADDRESS_KINDS.values())
            .order_by("customer_id", "kind", "-verified", "first_seen_at", "pk")
            .values_list("customer_id", "kind", "value")
        ):
            self.addresses.setdefault((c, kind), value)
        cart_ids = {e.cart_id for e in enrolments if e.cart_id}
        self.carts = dict(Cart.objects.filter(pk__in=cart_ids).values_list("pk", "status"))
        order_ids = {e.order_id for e in enrolments if e.order_id}
        self.orders = dict(Order.objects.filter(pk__in=order_ids).values_list("pk", "status"))
        pairs = {(e.variant_id, e.sales_channel_id) for e in enrolments if e.variant_id}
        self.available = {}
        if pairs:
            for v, ch, q in ChannelAvailability.objects.filter(
                variant_id__in={p[0] for p in pairs}, channel_id__in={p[1] for p in pairs}
            ).values_list("variant_id", "channel_id", "quantity"):
                self.available[(v, ch)] = q
        self.sent_times: dict[tuple[int, int], list] = defaultdict(list)

    def load_cap_counts(self, customer_ids, since) -> None:
        for c, ch, at in Message.objects.filter(
            customer_id__in=customer_ids,
            is_marketing=True,
            status__in=COUNTED,
            created_at__gte=since,
        ).values_list("customer_id", "channel_id", "created_at"):
            self.sent_times[(c, ch)].append(at)


def _exit_reason(enrolment: Enrolment, campaign: Campaign, batch: _Batch) -> str:
    customer = batch.customers.get(enrolment.customer_id)
    if customer is None or customer[5] is not None:
        return "customer_erased"
    if campaign.ends_at is not None and campaign.ends_at <= batch.now:
        return "campaign_ended"
    last_purchase = customer[4]
    if (
        campaign.exit_on_purchase
        and last_purchase is not None
        and last_purchase > enrolment.enrolled_at
    ):
        return "purchased"
    if campaign.trigger == Trigger.CART_ABANDONED and campaign.exit_on_cart_closed:
        status = batch.carts.get(enrolment.cart_id)
        if status is None:
            return "cart_gone"
        if status != CartStatus.OPEN:
            return f"cart_{status}"
    if campaign.trigger == Trigger.PICKUP_READY:
        status = batch.orders.get(enrolment.order_id)
        if status != OrderStatus.READY:
            return f"order_{status or 'gone'}"
    if campaign.trigger == Trigger.BACK_IN_STOCK and campaign.exit_on_sold_out:
        quantity = batch.available.get((enrolment.variant_id, enrolment.sales_channel_id), 0)
        if quantity < campaign.min_quantity:
            return "sold_out"
    return ""


def _choose_channel(step, enrolment, campaign, batch, rules):
    """``(channel_id, address, None)`` or ``(first channel tried, None, reason)``."""
    customer = batch.customers[enrolment.customer_id]
    first = None
    template = step.template
    for channel_id in candidate_channels(step.channel_codes, rules, customer[3]):
        rule = rules[channel_id]
        if not (rule.is_active and rule.is_enabled and rule.kind in SENDABLE_KINDS):
            continue
        state = batch.consent.get((enrolment.customer_id, channel_id))
        address = batch.addresses.get((enrolment.customer_id, ADDRESS_KINDS[rule.kind]))
        if state == ConsentStatus.OPTED_OUT or (
            campaign.is_marketing and rule.consent_required and state != ConsentStatus.OPTED_IN
        ):
            reason = SuppressionReason.NO_CONSENT
        elif not address:
            reason = SuppressionReason.NO_ADDRESS
        elif not template.has_rendition(rule.kind):
            reason = SuppressionReason.NO_RENDITION
        else:
            return channel_id, address, None
        if first is None:
            first = (channel_id, reason)
    if first is None:
        return None, None, SuppressionReason.NO_CHANNEL
    return first[0], None, first[1]


def _cap_wait(rule, times: list, now) -> datetime | None:
    """When a slot frees under ``rule``'s cap for these send times, or None if one is free."""
    if not rule.frequency_cap:
        return None
    since = now - timedelta(hours=rule.cap_period_hours)
    recent = sorted(t for t in times if t > since)
    if len(recent) < rule.frequency_cap:
        return None
    return recent[len(recent) - rule.frequency_cap] + timedelta(hours=rule.cap_period_hours)


def _advance(enrolment: Enrolment, steps: dict, now, result: ClaimResult) -> None:
    nxt = steps.get(enrolment.next_position + 1)
    enrolment.last_deferral = ""
    if nxt is None:
        enrolment.status = EnrolmentStatus.COMPLETED
        enrolment.due_at = None
        enrolment.finished_at = now
        result.completed += 1
    else:
        enrolment.next_position += 1
        enrolment.due_at = now + timedelta(minutes=nxt.delay_minutes)


def _claim_due(now, limit: int) -> list[Enrolment]:
    """Lock up to ``limit`` due enrolments of active campaigns, with their customers, skipping
    rows another transaction holds: another send worker's (so workers share the work, and a
    customer's steps are decided by one worker at a time, which keeps her cap exact) or a
    merge's or erasure's (which lock the customer first; the claim never waits for them, so
    they cannot deadlock). Campaign by campaign, through the (campaign, due_at, id) index: a
    paused campaign's backlog is never read (``_shared``)."""
    due = Enrolment.objects.filter(
        campaign_id=OuterRef("pk"), status=EnrolmentStatus.ACTIVE, due_at__lte=now
    )
    # Only campaigns with a step due: one query, not a lock query per campaign each run.
    active = list(
        Campaign.objects.filter(Exists(due), status=CampaignStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )

    def take(campaign_id, room, last):
        # After the rows this transaction already holds (its own locks are not skipped).
        after = (
            None
            if last is None
            else Q(due_at__gt=last.due_at) | Q(due_at=last.due_at, pk__gt=last.pk)
        )
        return _due(campaign_id, now, room, after)

    return _shared(active, limit, take)


def _shared(campaign_ids: list[int], limit: int, take) -> list:
    """Up to ``limit`` rows, campaign by campaign, from ``take(campaign_id, room, last)``: the
    campaign's first ``room`` rows in its claim order, after ``last`` (the last row this batch
    took of it) when given. Each campaign first gets an equal share of the batch (one
    campaign's backlog never holds up another's); what the others leave is then given to those
    with more waiting, so a batch is full whenever that much is due."""
    share = max(limit // max(len(campaign_ids), 1), 50)
    taken: list = []
    more: list[tuple[int, object]] = []  # campaigns that filled their share: their last row
    for campaign_id in campaign_ids:
        room = min(limit - len(taken), share)
        if room <= 0:
            break
        rows = take(campaign_id, room, None)
        taken.extend(rows)
        if len(rows) == room:
            more.append((campaign_id, rows[-1]))
    for campaign_id, last in more:
        room = limit - len(taken)
        if room <= 0:
            break
        taken.extend(take(campaign_id, room, last))
    return taken


def _due(campaign_id: int, now, room: int, after: Q | None = None) -> list[Enrolment]:
    due = Enrolment.objects.filter(
        campaign_id=campaign_id, status=EnrolmentStatus.ACTIVE, due_at__lte=now
    )
    if after is not None:
        due = due.filter(after)
    return list(
        due.select_related("customer")
        .only("customer__id", *(f.attname for f in Enrolment._meta.concrete_fields))
        .select_for_update(skip_locked=True, no_key=True, of=("self", "customer"))
        .order_by("due_at", "pk")[:room]
    )


def steps_claim(*, now=None, limit: int | None = None, rules=None) -> ClaimResult:
    """Phase 1: turn up to ``limit`` due steps into messages (queued or suppressed) or
    deferrals, in one transaction."""
    now = now or timezone.now()
    limit = limit or settings.OMNI_SEND_BATCH
    rules = rules if rules is not None else rules_by_channel()
    result = ClaimResult()
    with transaction.atomic():
        enrolments = _claim_due(now, limit)
        if not enrolments:
            return result
        result.claimed = len(enrolments)
        campaigns = {
            c.pk: c
            for c in Campaign.objects.filter(
                pk__in={e.campaign_id for e in enrolments}
            ).prefetch_related("steps__template")
        }
        steps = {cid: {s.position: s for s in c.steps.all()} for cid, c in campaigns.items()}
        marketing_customers = sorted(
            {e.customer_id for e in enrolments if campaigns[e.campaign_id].is_marketing}
        )
        batch = _Batch(enrolments, now)
        longest = max((r.cap_period_hours for r in rules.values() if r.frequency_cap), default=0)
        if longest and marketing_customers:
            batch.load_cap_counts(marketing_customers, now - timedelta(hours=longest))
        messages = []
        for enrolment in enrolments:
            campaign = campaigns[enrolment.campaign_id]
            step = steps[campaign.pk].get(enrolment.next_position)
            if step is None:
                _advance(enrolment, {}, now, result)
                continue
            message = Message(
                enrolment_id=enrolment.pk,
                campaign_id=campaign.pk,
                step_id=step.pk,
                customer_id=enrolment.customer_id,
                is_marketing=campaign.is_marketing,
                created_at=now,
            )
            reason = _exit_reason(enrolment, campaign, batch)
            if reason:
                message.status = MessageStatus.SUPPRESSED
                message.reason = SuppressionReason.EXITED
                message.detail = reason
                messages.append(message)
                enrolment.status = EnrolmentStatus.EXITED
                enrolment.exit_reason = reason
                enrolment.due_at = None
                enrolment.finished_at = now
                result.exited[reason] += 1
                continue
            if enrolment.holdout:
                message.status = MessageStatus.SUPPRESSED
                message.reason = SuppressionReason.HOLDOUT
                messages.append(message)
                result.suppressed[SuppressionReason.HOLDOUT.value] += 1
                _advance(enrolment, steps[campaign.pk], now, result)
                continue
            channel_id, address, reason = _choose_channel(step, enrolment, campaign, batch, rules)
            message.channel_id = channel_id
            if reason:
                message.status = MessageStatus.SUPPRESSED
                message.reason = reason
                messages.append(message)
                result.suppressed[str(reason)] += 1
                _advance(enrolment, steps[campaign.pk], now, result)
                continue
            rule = rules[channel_id]
            key = (enrolment.customer_id, channel_id)
            if campaign.is_marketing:
                wait = _cap_wait(rule, batch.sent_times[key], now)
                if wait is not None and rule.over_cap == OverCap.SKIP:
                    message.status = MessageStatus.SUPPRESSED
                    message.reason = SuppressionReason.CAPPED
                    message.detail = f"{rule.frequency_cap} per {rule.cap_period_hours} h"
                    messages.append(message)
                    result.suppressed[SuppressionReason.CAPPED.value] += 1
                    _advance(enrolment, steps[campaign.pk], now, result)
                    continue
                if wait is not None:
                    _defer(enrolment, wait, SuppressionReason.CAPPED, result)
                    continue
            customer = batch.customers[enrolment.customer_id]
            until = quiet_until(
                rule.quiet_start, rule.quiet_end, _time_zone(customer[1], customer[2]), now
            )
            if until is not None:
                _defer(enrolment, until, SuppressionReason.QUIET_HOURS, result)
                continue
            message.status = MessageStatus.QUEUED
            message.to = address
            message.next_attempt_at = now
            messages.append(message)
            if campaign.is_marketing:
                batch.sent_times[key].append(now)
            result.queued += 1
            _advance(enrolment, steps[campaign.pk], now, result)
        Message.objects.bulk_create(messages, ignore_conflicts=True, batch_size=1000)
        bulk_update_values(Enrolment, enrolments, ENROLMENT_FIELDS)
    return result


def _defer(enrolment: Enrolment, until, reason, result: ClaimResult) -> None:
    enrolment.due_at = until
    enrolment.deferrals = min(enrolment.deferrals + 1, 32767)
    enrolment.last_deferral = reason.value
    result.deferred[reason.value] += 1


# --- phase 2: deliver --------------------------------------------------------------------


# A queued message due longer ago than this is checked again before it goes.
RECHECK_AFTER = timedelta(minutes=10)


def _backoff(attempts: int) -> timedelta:
    """1, 4, 16, 64 minutes ... after the 1st, 2nd, 3rd, 4th attempt."""
    return timedelta(minutes=4 ** max(attempts - 1, 0))


def _queued(now, campaign_id: int, room: int, last) -> list[tuple]:
    """Lock the first ``room`` queued messages of a campaign that are due, in (next attempt,
    id) order, after ``last`` (a ``(next_attempt_at, id)`` this batch took already), through the
    (campaign, next_attempt_at, id) index of queued messages: another campaign's queue, a
    paused one's however long, is not read. Rows another worker holds are skipped."""
    queued = Message.objects.filter(
        campaign_id=campaign_id, status=MessageStatus.QUEUED, next_attempt_at__lte=now
    )
    if last is not None:
        when, pk = last
        queued = queued.filter(Q(next_attempt_at__gt=when) | Q(next_attempt_at=when, pk__gt=pk))
    return list(
        queued.select_for_update(skip_locked=True)
        .order_by("next_attempt_at", "pk")
        .values_list("next_attempt_at", "pk")[:room]
    )


def messages_deliver(*, now=None, limit: int | None = None) -> DeliverResult:
    """Phase 2: hand up to ``limit`` queued messages to their backends."""
    from campaigns.backends import backend_for
    from campaigns.backends.base import (
        DeliveryResult,
        OutcomeUnknownError,
        OutgoingMessage,
        PermanentDeliveryError,
        TransientDeliveryError,
    )
    from campaigns.rendering import render_batch

    now = now or timezone.now()
    limit = limit or settings.OMNI_SEND_BATCH
    result = DeliverResult()
    with transaction.atomic():
        # A paused campaign's queued messages wait with its enrolments (nothing of it is sent
        # until it is activated again); once its end date passed (it can no longer be
        # activated) they are taken, to be suppressed by the check below.
        # Only campaigns with a message due: one query, not a lock query per campaign.
        queued = Message.objects.filter(
            campaign_id=OuterRef("pk"), status=MessageStatus.QUEUED, next_attempt_at__lte=now
        )
        sendable = list(
            Campaign.objects.filter(Q(status=CampaignStatus.ACTIVE) | Q(ends_at__lte=now))
            .filter(Exists(queued))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not sendable:
            return result
        ids = [pk for _when, pk in _shared(sendable, limit, partial(_queued, now))]
        if not ids:
            return result
        # Committed before any backend is called: no other worker takes these.
        Message.objects.filter(pk__in=ids).update(
            status=MessageStatus.SENDING, sending_since=now, attempts=F("attempts") + 1
        )
    messages = list(
        Message.objects.filter(pk__in=ids).select_related("customer", "enrolment").order_by("pk")
    )
    _attach_shared(messages)
    result.attempted = len(messages)
    # A retry, a message that waited since it was due (its campaign paused, the workers
    # stopped) or one of a campaign no longer active is checked again before it goes.
    waited = now - RECHECK_AFTER
    finished = _recheck_retries(
        [
            m
            for m in messages
            if m.attempts > 1
            or m.next_attempt_at < waited
            or m.campaign.status != CampaignStatus.ACTIVE
        ],
        now,
        result,
    )
    held = {m.pk for m in finished}
    messages = [m for m in messages if m.pk not in held]
    try:
        rendered = render_batch(messages)
    except Exception as error:
        # A message that cannot be rendered is left out by render_batch itself; what gets
        # here failed the whole batch (the database went away, a setting is wrong): tried
        # again later, as a transient delivery error would be.
        log.exception("Rendering a batch of messages failed")
        for message in messages:
            _retry_or_fail(message, f"Rendering failed: {error}", now, result)
            finished.append(message)
        messages, rendered = [], {}
    by_kind: dict[str, list] = defaultdict(list)
    for message in messages:
        r = rendered.get(message.pk)
        if r is None:
            _fail(
                message,
                "render_error",
                "The template could not be rendered (see the log).",
                now,
                result,
            )
            finished.append(message)
            continue
        message.preview = (r.preview or "")[:200]
        by_kind[message.channel.kind].append(
            (
                message,
                OutgoingMessage(
                    message_id=message.pk,
                    channel_code=message.channel.code,
                    channel_kind=message.channel.kind,
                    to=message.to,
                    subject=r.subject,
                    text=r.text,
                    html=r.html,
                    unsubscribe_url=r.unsubscribe_url,
                    metadata={
                        "campaign": message.campaign_id,
                        "step": message.step.position,
                        "customer": message.customer_id,
                    },
                ),
            )
        )
    for kind, pairs in by_kind.items():
        backend = backend_for(kind)
        outcomes = backend.send_many([outgoing for _, outgoing in pairs])
        for (message, _), outcome in zip(pairs, outcomes, strict=True):
            finished.append(message)
            if isinstance(outcome, DeliveryResult):
                message.status = (
                    MessageStatus.DELIVERED if outcome.delivered else MessageStatus.SENT
                )
                message.sent_at = now
                message.provider_id = (outcome.provider_id or "")[:200]
                message.reason, message.detail = "", ""
                if outcome.delivered:
                    message.delivered_at = now
                    result.delivered += 1
                else:
                    result.sent += 1
            elif isinstance(outcome, OutcomeUnknownError) and not backend.idempotent:
                # It may have gone out: never again (staff see why).
                _fail(message, "unknown_outcome", str(outcome), now, result)
            elif isinstance(outcome, (TransientDeliveryError, OutcomeUnknownError)):
                _retry_or_fail(message, str(outcome), now, result)
            else:
                kind_of = "permanent" if isinstance(outcome, PermanentDeliveryError) else "gave_up"
                _fail(message, kind_of, str(outcome), now, result)
    for message in finished:
        message.sending_since = None
    bulk_update_values(
        Message,
        finished,
        [
            "status",
            "sent_at",
            "delivered_at",
            "failed_at",
            "provider_id",
            "reason",
            "detail",
            "preview",
            "attempts",
            "next_attempt_at",
            "sending_since",
        ],
    )
    return result


def _recheck_retries(messages: list[Message], now, result: DeliverResult) -> list[Message]:
    """A message tried before waited for its retry (or one that waited to be sent at all):
    check again, as at the claim, what may have changed since (an opt-out, the exit
    condition, the night). Returns those that do not go now, decided: suppressed, or queued
    again for the end of the quiet hours."""
    if not messages:
        return []
    rules = rules_by_channel()
    batch = _Batch([m.enrolment for m in messages], now)
    held = []
    for message in messages:
        campaign = message.campaign
        rule = rules.get(message.channel_id)
        state = batch.consent.get((message.customer_id, message.channel_id))
        reason = _exit_reason(message.enrolment, campaign, batch)
        if reason:
            message.status = MessageStatus.SUPPRESSED
            message.reason, message.detail = SuppressionReason.EXITED, reason
        elif rule is None or not (rule.is_active and rule.is_enabled):
            # Staff switched the channel off since: nothing more goes out on it.
            message.status = MessageStatus.SUPPRESSED
            message.reason = SuppressionReason.NO_CHANNEL
            message.detail = "The channel was switched off since the message was queued."
        elif state == ConsentStatus.OPTED_OUT or (
            campaign.is_marketing
            and rule is not None
            and rule.consent_required
            and state != ConsentStatus.OPTED_IN
        ):
            message.status = MessageStatus.SUPPRESSED
            message.reason, message.detail = SuppressionReason.NO_CONSENT, ""
        else:
            customer = batch.customers[message.customer_id]
            until = (
                quiet_until(
                    rule.quiet_start, rule.quiet_end, _time_zone(customer[1], customer[2]), now
                )
                if rule is not None
                else None
            )
            if until is None:
                continue
            message.status = MessageStatus.QUEUED
            message.next_attempt_at = until
            message.attempts -= 1  # waiting for the morning is not an attempt
            message.reason, message.detail = "quiet_hours", "Waits for the end of quiet hours."
            result.retrying += 1
            held.append(message)
            continue
        result.suppressed += 1
        held.append(message)
    return held


def _attach_shared(messages: list[Message]) -> None:
    """Give each message its channel, step (with its template) and campaign from one read of
    each (a batch has a handful of them), instead of a copy of each per message."""
    channels = Channel.objects.in_bulk({m.channel_id for m in messages if m.channel_id})
    steps = CampaignStep.objects.select_related("template").in_bulk({m.step_id for m in messages})
    campaigns = Campaign.objects.in_bulk({m.campaign_id for m in messages})
    for relation, rows, attname in (
        (Message._meta.get_field("channel"), channels, "channel_id"),
        (Message._meta.get_field("step"), steps, "step_id"),
        (Message._meta.get_field("campaign"), campaigns, "campaign_id"),
    ):
        for message in messages:
            relation.set_cached_value(message, rows.get(getattr(message, attname)))


def _retry_or_fail(message: Message, detail: str, now, result: DeliverResult) -> None:
    """A transient failure: queued again with backoff, or failed (``gave_up``) after
    ``OMNI_SEND_MAX_ATTEMPTS`` attempts."""
    if message.attempts >= settings.OMNI_SEND_MAX_ATTEMPTS:
        _fail(message, "gave_up", detail, now, result)
        return
    message.status = MessageStatus.QUEUED
    message.next_attempt_at = now + _backoff(message.attempts)
    message.reason, message.detail = "transient", detail[:500]
    result.retrying += 1


def _fail(message: Message, kind: str, detail: str, now, result: DeliverResult) -> None:
    message.status = MessageStatus.FAILED
    message.reason = kind
    message.detail = (detail or "")[:500]
    message.failed_at = now
    result.failed += 1


def messages_recover(*, now=None) -> tuple[int, int]:
    """Messages whose worker stopped while sending (older than the lease): sent again on a
    backend that dedupes by message id, else failed with an unknown outcome. Returns
    ``(requeued, failed)``."""
    from campaigns.backends import backend_for

    now = now or timezone.now()
    stale_before = now - timedelta(minutes=settings.OMNI_SEND_LEASE_MINUTES)
    requeued = failed = 0
    with transaction.atomic():
        stale = list(
            Message.objects.filter(status=MessageStatus.SENDING, sending_since__lt=stale_before)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("channel")
        )
        retry = [m.pk for m in stale if backend_for(m.channel.kind).idempotent]
        give_up = [m.pk for m in stale if m.pk not in set(retry)]
        if retry:
            requeued = Message.objects.filter(pk__in=retry).update(
                status=MessageStatus.QUEUED, next_attempt_at=now, sending_since=None
            )
        if give_up:
            failed = Message.objects.filter(pk__in=give_up).update(
                status=MessageStatus.FAILED,
                reason="unknown_outcome",
                detail="The worker stopped while sending; not sent again so that it is never "
                "sent twice. Check the provider before resending by hand.",
                failed_at=now,
                sending_since=None,
            )
    return requeued, failed


def messages_send(*, now=None, budget_seconds: float = 50, progress=None) -> SendResult:
    """The send task: recover stale sends, claim due steps and deliver queued messages in
    batches until there is nothing left or the time budget is spent."""
    from campaigns.rendering import recommendations_kept

    result = SendResult()
    fixed_now = now
    result.recovered, result.abandoned = messages_recover(now=fixed_now)
    rules = rules_by_channel()
    deadline = _time.monotonic() + budget_seconds
    # Each item's recommendations read once per run, not once per batch.
    with recommendations_kept():
        while _time.monotonic() < deadline:
            claim = steps_claim(now=fixed_now, rules=rules)
            result.add_claim(claim)
            deliver = messages_deliver(now=fixed_now)
            result.add_deliver(deliver)
            if progress:
                progress(result)
            if not claim.claimed and not deliver.attempted:
                break
    return result


def send_soon() -> None:
    """Ask a worker to send now (after the current transaction commits)."""
    from campaigns.tasks import send_messages

    transaction.on_commit(send_messages.delay)
