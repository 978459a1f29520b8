"""Consent per customer and messaging channel: every decision kept, the latest (by the time the
customer made it) wins and is kept in ``ConsentState`` so that campaigns read it in one query."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from customers.models import Consent, ConsentState, ConsentStatus, Customer, TouchpointKind
from omni.exceptions import Conflict, ValidationFailed
from omni.formats import parse_past_time
from omni.models import Channel

from .common import customer_lock

STATUSES = tuple(s.value for s in ConsentStatus)


def _state_upsert(customer_id: int, consent: Consent) -> bool:
    """Make ``consent`` the current state unless a later decision is known. True if it is."""
    state = ConsentState.objects.filter(
        customer_id=customer_id, channel_id=consent.channel_id
    ).first()
    if state is None:
        ConsentState.objects.create(
            customer_id=customer_id,
            channel_id=consent.channel_id,
            status=consent.status,
            occurred_at=consent.occurred_at,
            consent=consent,
        )
        return True
    if consent.occurred_at < state.occurred_at:
        return False
    state.status, state.occurred_at, state.consent = (
        consent.status,
        consent.occurred_at,
        consent,
    )
    state.save(update_fields=["status", "occurred_at", "consent"])
    return True


@transaction.atomic
def consent_record(
    *,
    customer: Customer,
    channel: Channel,
    status: str,
    source: str,
    occurred_at: datetime | str | None = None,
    proof: str = "",
    actor=None,
) -> Consent:
    """Record that the customer opted in or out of ``channel``. A decision older than the
    current one goes into the history without changing the current state."""
    errors = {}
    if channel is None or not channel.is_messaging:
        errors["channel"] = ["Consent is given per messaging channel (email, SMS, push, ...)."]
    if status not in STATUSES:
        errors["status"] = [f"One of: {', '.join(STATUSES)}."]
    source = (source or "").strip()
    if not source:
        errors["source"] = ["Say where the customer gave it (web form, store, ...)."]
    elif len(source) > 80:
        errors["source"] = ["At most 80 characters."]
    now = timezone.now()
    moment, time_error = parse_past_time(occurred_at, now)
    if time_error:
        errors["occurred_at"] = [time_error]
    if errors:
        raise ValidationFailed(
            "The consent was not recorded: " + " ".join(m for v in errors.values() for m in v),
            extra=errors,
        )
    locked = customer_lock([customer.pk])
    if not locked:
        raise Conflict(f"Customer {customer.pk} no longer exists (merged?).", code="customer_gone")
    if locked[0].erased_at is not None:
        raise Conflict("This customer was erased.", code="customer_erased")
    consent = Consent.objects.create(
        customer=customer,
        channel=channel,
        status=status,
        source=source,
        occurred_at=moment,
        proof=proof or "",
        recorded_at=now,
        recorded_by=actor if actor is not None and actor.is_authenticated else None,
    )
    # Whether this decision is now the current one (a late record of an older one is not).
    consent.is_current = _state_upsert(customer.pk, consent)
    from .touchpoints import touchpoint_record

    touchpoint_record(
        customer=customer,
        channel=channel,
        kind=TouchpointKind.CONSENT_CHANGED,
        source="omni:consent",
        event_id=str(consent.pk),
        occurred_at=moment,
        properties={"status": status, "source": source},
    )
    return consent


def consent_states_merge(*, survivor: Customer, merged: Customer) -> int:
    """Per channel the newest decision of the two customers becomes the survivor's state.
    The history rows (``Consent``) have already moved or move with the generic merge."""
    moved = 0
    for state in ConsentState.objects.filter(customer=merged).select_related("consent"):
        moved += 1
        _state_upsert(survivor.pk, state.consent)
        state.delete()
    return moved
