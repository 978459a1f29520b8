"""Export and erase a customer's data on request; each is recorded as a ``PrivacyRequest``.

Both walk every foreign key to ``Customer`` (as merges do), so data later apps attach is
exported and erased too. A model decides how its rows leave with two optional classmethods:
``export_customer_rows(customer)`` (default: the rows as they are) and
``erase_customer_rows(customer)`` (default: delete them; orders keep their rows and blank the
personal fields instead).
"""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from customers.models import (
    PROFILE_FIELDS,
    Conversation,
    ConversationMessage,
    Customer,
    CustomerMerge,
    PreferenceSource,
    PrivacyRequest,
    PrivacyRequestKind,
    Touchpoint,
)
from omni.exceptions import Conflict
from omni.services import outbox_emit

from .common import customer_lock
from .merge import customer_relations, customer_snapshot

ERASED_NAME = "Erased"


def _conversation_rows(customer) -> list:
    """Conversations with their messages: the messages are what the customer wrote."""
    conversations = list(
        Conversation._base_manager.filter(customer=customer).order_by("pk").values()
    )
    messages = {}
    for message in (
        ConversationMessage._base_manager.filter(conversation__customer=customer)
        .order_by("sent_at", "pk")
        .values()
    ):
        messages.setdefault(message["conversation_id"], []).append(message)
    for conversation in conversations:
        conversation["messages"] = messages.get(conversation["id"], [])
    return conversations


def _touchpoint_rows(customer) -> list:
    """Her events, without the copy of each as the timeline API writes it (``rendition``)."""
    columns = [f.attname for f in Touchpoint._meta.concrete_fields if f.name != "rendition"]
    return list(Touchpoint._base_manager.filter(customer=customer).order_by("pk").values(*columns))


# Exporters of this app's models whose rows need more (or less) than their own columns.
EXPORTERS = {Conversation: _conversation_rows, Touchpoint: _touchpoint_rows}


def _rows(model, fk, customer) -> list:
    exporter = getattr(model, "export_customer_rows", None) or EXPORTERS.get(model)
    if exporter is not None:
        return exporter(customer)
    return list(model._base_manager.filter(**{fk.name: customer}).order_by("pk").values())


def customer_export_data(customer: Customer) -> dict:
    """Everything held about the customer, as JSON-ready data."""
    data = {"customer": customer_snapshot(customer), "exported_at": timezone.now()}
    for model, fk in customer_relations():
        key = f"{model._meta.label_lower}" + ("" if fk.name == "customer" else f"__{fk.name}")
        data[key] = _rows(model, fk, customer)
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


@transaction.atomic
def customer_export(*, customer: Customer, source: str, actor=None, reason: str = "") -> dict:
    """The customer's data (see ``customer_export_data``), with the request recorded."""
    current = Customer.objects.filter(pk=customer.pk).first()
    if current is None:
        raise Conflict(f"Customer {customer.pk} no longer exists (merged?).", code="customer_gone")
    data = customer_export_data(current)
    PrivacyRequest.objects.create(
        customer_id_ref=current.pk,
        kind=PrivacyRequestKind.EXPORT,
        reason=reason[:200],
        summary={k: len(v) for k, v in data.items() if isinstance(v, list)},
        source=source[:80],
        actor=actor if actor is not None and actor.is_authenticated else None,
        created_at=timezone.now(),
    )
    return data


@transaction.atomic
def customer_erase(*, customer: Customer, source: str, actor=None, reason: str = "") -> dict:
    """Remove the customer's personal data: identities, timeline, consents, conversations and
    segments' view of her go; the profile row stays (anonymised) so that orders and stock
    history keep their customer without personal data. Returns what was removed per model."""
    locked = customer_lock([customer.pk])
    if not locked:
        raise Conflict(f"Customer {customer.pk} no longer exists (merged?).", code="customer_gone")
    current = locked[0]
    if current.erased_at is not None:
        raise Conflict("This customer was erased already.", code="customer_erased")
    summary = {}

    def add(label, count):
        if count:
            summary[label] = summary.get(label, 0) + count

    for model, fk in customer_relations():
        if model is CustomerMerge:
            # The audit rows stay (the merge happened) without the personal data they copied.
            count = CustomerMerge.objects.filter(survivor=current).update(
                merged_snapshot={"erased": True}, field_changes={}
            )
            add(model._meta.label, count)
            continue
        eraser = getattr(model, "erase_customer_rows", None)
        if eraser is not None:
            add(model._meta.label, eraser(current))
            continue
        # Count per model what the delete removed, cascades included (a consent takes its
        # state with it, a conversation its messages).
        _, removed = model._base_manager.filter(**{fk.name: current}).delete()
        for label, count in removed.items():
            add(label, count)
    for name in PROFILE_FIELDS:
        field = Customer._meta.get_field(name)
        setattr(current, field.attname, None if field.null else "")
    current.first_name = ERASED_NAME
    current.preferred_channel = None
    current.preferred_channel_source = PreferenceSource.INFERRED
    current.field_times = {}
    current.erased_at = timezone.now()
    current.save()
    PrivacyRequest.objects.create(
        customer_id_ref=current.pk,
        kind=PrivacyRequestKind.ERASE,
        reason=reason[:200],
        summary=summary,
        source=source[:80],
        actor=actor if actor is not None and actor.is_authenticated else None,
        created_at=current.erased_at,
    )
    outbox_emit(
        type="customer.erased",
        subject_type="customer",
        subject_id=current.pk,
        payload={"customer": current.pk},
    )
    return summary
