"""Profile writes: create a customer with her identifiers, change profile fields."""

from datetime import UTC

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from customers.identifiers import Identifier, keys_q
from customers.models import PROFILE_FIELDS, Customer, PreferenceSource
from inventory.models import Location, LocationKind
from omni.exceptions import Conflict, ValidationFailed
from omni.models import Channel

from .common import customer_lock

EDITABLE = (*PROFILE_FIELDS, "preferred_channel")


def profile_clean(data: dict) -> dict:
    """Profile fields checked and converted (locations and channels by code); any wrong or
    unknown field refuses them all with every error by field."""
    clean, errors = _clean(data)
    if errors:
        raise ValidationFailed(
            "The profile was not changed: "
            + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()),
            extra=errors,
        )
    return clean


def _clean(data: dict) -> tuple[dict, dict]:
    errors, clean = {}, {}
    unknown = sorted(set(data) - set(EDITABLE))
    for name in unknown:
        errors[name] = [f"Unknown field; one of: {', '.join(EDITABLE)}."]
    for name in PROFILE_FIELDS:
        if name not in data:
            continue
        value = data[name]
        if name == "home_store":
            if value in (None, ""):
                clean[name] = None
                continue
            location = value if isinstance(value, Location) else None
            if location is None:
                location = Location.objects.filter(code=str(value)).first()
            if location is None:
                errors[name] = [f"Unknown location {value}."]
            elif location.kind != LocationKind.STORE:
                errors[name] = [f"{location.code} is a warehouse, not a store."]
            else:
                clean[name] = location
            continue
        value = "" if value is None else value
        if not isinstance(value, str):
            errors[name] = ["Must be text."]
            continue
        if "\x00" in value:  # PostgreSQL cannot store it: say so instead of failing
            errors[name] = ["Contains a NUL character."]
            continue
        field = Customer._meta.get_field(name)
        value = value.strip()
        try:
            field.clean(value, None)
        except ValidationError as error:
            errors[name] = list(error.messages)
            continue
        clean[name] = value
    if "preferred_channel" in data:
        value = data["preferred_channel"]
        if value in (None, ""):
            clean["preferred_channel"] = None
        else:
            channel = value if isinstance(value, Channel) else None
            if channel is None:
                channel = Channel.objects.filter(code=str(value)).first()
            if channel is None:
                errors["preferred_channel"] = [f"Unknown channel {value}."]
            elif not channel.is_messaging:
                errors["preferred_channel"] = [f"{channel.code} is not a messaging channel."]
            else:
                clean["preferred_channel"] = channel
    return clean, errors


def profile_apply(customer: Customer, clean: dict, at) -> list[str]:
    """Set the cleaned fields on ``customer`` (not saved) and return those that changed. Only
    a changed field gets a new time in ``field_times``: sending a whole profile again must not
    make its old values look newest to a later merge."""
    stamp = at.astimezone(UTC).isoformat()
    times = dict(customer.field_times or {})
    changed = []
    for name, value in clean.items():
        if name == "preferred_channel":
            source = PreferenceSource.CUSTOMER if value is not None else PreferenceSource.INFERRED
            channel_id = value.pk if value is not None else None
            if (customer.preferred_channel_id, customer.preferred_channel_source) != (
                channel_id,
                source,
            ):
                customer.preferred_channel = value
                customer.preferred_channel_source = source
                times[name] = stamp
                changed.append(name)
            continue
        if getattr(customer, name) != value:
            setattr(customer, name, value)
            times[name] = stamp
            changed.append(name)
    customer.field_times = times
    return changed


@transaction.atomic
def customer_update(*, customer: Customer, data: dict, actor=None, at=None) -> Customer:
    """Change profile fields (names, persona attributes, language, time zone, home store,
    preferred channel). Unknown or invalid fields refuse the whole change. The returned
    customer's ``changed_fields`` lists the fields whose value changed."""
    clean = profile_clean(data)
    locked = customer_lock([customer.pk])
    if not locked:
        raise Conflict(f"Customer {customer.pk} no longer exists (merged?).", code="customer_gone")
    current = locked[0]
    if current.erased_at is not None:
        raise Conflict("This customer was erased.", code="customer_erased")
    return profile_save(current, clean, at or timezone.now())


def profile_save(customer: Customer, clean: dict, at) -> Customer:
    """Apply cleaned fields to a locked customer and save what changed; a preferred channel
    given up by the customer is inferred from use again. Sets ``changed_fields``."""
    changed = profile_apply(customer, clean, at)
    if changed:
        customer.save()
    if "preferred_channel" in changed and clean["preferred_channel"] is None:
        from .stats import preferred_channel_infer

        preferred_channel_infer(customer_ids=[customer.pk])
        customer.refresh_from_db()
    customer.changed_fields = changed
    return customer


@transaction.atomic
def customer_create(
    *, data: dict, identifiers: list[Identifier], source: str, actor=None
) -> Customer:
    """A customer created by staff or an integrator with her identifiers. An identifier that
    already belongs to someone refuses the creation (find that customer instead)."""
    from .resolution import ResolveRequest, drop_blocked, identities_resolve

    clean, errors = _clean(data)
    if not identifiers:
        errors["identifiers"] = ["At least one identifier (email, phone, loyalty card, ...)."]
    if errors:
        raise ValidationFailed(
            "The customer was not created: "
            + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()),
            extra=errors,
        )
    from customers.models import Identity

    from .common import identifiers_lock

    identifiers_lock(i.key for i in identifiers)
    taken = [
        f"{kind} {value}"
        for kind, value in Identity.objects.filter(keys_q(i.key for i in identifiers))
        .order_by("kind", "value")
        .values_list("kind", "value")
    ]
    if taken:
        raise Conflict(
            f"Already known: {', '.join(taken)}. Open that customer instead.",
            code="identifier_taken",
            extra={"identifiers": [f"{t} belongs to another customer." for t in taken]},
        )
    requests, empty = drop_blocked([ResolveRequest(list(identifiers))])
    if empty:
        raise ValidationFailed(
            "Every identifier given is blocked.",
            code="identifiers_blocked",
            extra={"identifiers": ["Every identifier given is blocked."]},
        )
    now = timezone.now()
    resolution = identities_resolve(requests=requests, source=source, seen_at=now, actor=actor)
    customer = Customer.objects.get(pk=resolution.customer_ids[0])
    profile_apply(customer, clean, now)
    customer.save()
    return customer
