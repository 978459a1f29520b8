"""Customer lookup at the counter and the customer's page.

Customers are shared by every store, so any store's staff may look anyone up (from a page of a
store they work in). The page shows the one profile across channels: identifiers, consent per
messaging channel (with the opt-in or opt-out given at the counter recorded through
``consent_record``), the cross-channel timeline, the conversation (a note from the counter is
added through ``conversation_message_add``), her orders from every channel and her open carts.
Every write goes through a customers service; every read here is bounded.
"""

from datetime import datetime

from django.contrib import messages
from django.db.models import Prefetch, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from customers.models import (
    ConsentStatus,
    ConversationMessage,
    Customer,
    IdentityKind,
    MessageDirection,
)
from customers.selectors import (
    consent_current,
    customer_get,
    customer_timeline,
    customers_matching,
    main_identity,
)
from customers.services import consent_record, conversation_message_add
from omni.exceptions import NotFound, OmniError
from omni.models import Channel
from orders.forms import ConsentForm, NoteForm, SearchForm
from orders.selectors import open_carts_for_customer, orders_for_customer

from .base import add_service_error, error_text, store_page

MAX_MATCHES = 20
TIMELINE_PAGE = 50
RECENT_ORDERS = 20
OPEN_CARTS = 10
CONVERSATIONS = 3
MESSAGES_PER_CONVERSATION = 20
MAX_IDENTITIES = 50


def _annotated(queryset):
    return queryset.select_related("home_store").annotate(
        email=main_identity(IdentityKind.EMAIL), phone=main_identity(IdentityKind.PHONE)
    )


def _search(text: str) -> tuple[list[Customer], bool]:
    """Customers by any identifier (normalised: index lookups); by name only when no identifier
    matched, as the customers admin does. At most ``MAX_MATCHES``, and whether there are more."""
    customers = customers_matching(text)
    if not customers.exists():
        name = Q()
        for word in text.split()[:5]:
            name &= Q(first_name__icontains=word) | Q(last_name__icontains=word)
        customers = Customer.objects.filter(name, erased_at__isnull=True)
    found = list(_annotated(customers).order_by("last_name", "first_name", "pk")[: MAX_MATCHES + 1])
    return found[:MAX_MATCHES], len(found) > MAX_MATCHES


@store_page
def customer_search(request, location):
    form = SearchForm(request.GET or None)
    context = {"form": form, "query": "", "customers": [], "more": False}
    if form.is_valid() and form.cleaned_data["q"]:
        customers, more = _search(form.cleaned_data["q"])
        context.update(
            query=form.cleaned_data["q"],
            customers=customers,
            more=more,
            max_matches=MAX_MATCHES,
        )
    return render(request, "store/customers.html", context)


def _customer_or_redirect(request, location, pk):
    """``(customer, None)``, or ``(None, response)``: a merged-away id goes to the survivor."""
    try:
        customer = customer_get(
            pk, Customer.objects.select_related("home_store", "preferred_channel")
        )
    except NotFound as exc:
        survivor = exc.extra.get("survivor")
        if survivor is None:
            return None, render(
                request, "store/not_found.html", {"message": exc.message}, status=404
            )
        messages.info(request, exc.message)
        return None, redirect("store:customer", location.code, survivor)
    return customer, None


def _cursor(value: str) -> tuple[datetime, int] | None:
    """A timeline cursor ``<occurred_at ISO>~<id>``: events strictly older than that one."""
    moment, _, pk = (value or "").rpartition("~")
    try:
        parsed = parse_datetime(moment)
    except ValueError:
        return None
    if parsed is None or not pk.isdigit():
        return None
    return parsed, int(pk)


def _timeline_page(customer, cursor) -> tuple[list, str | None]:
    """One page of the timeline, newest first, and the cursor of the next page (keyset on the
    timeline index: ``(occurred_at, id)`` below the last one shown)."""
    events = customer_timeline(customer.pk).select_related("channel", "location")
    if cursor:
        moment, pk = cursor
        events = events.filter(Q(occurred_at__lt=moment) | Q(occurred_at=moment, pk__lt=pk))
    page = list(events[: TIMELINE_PAGE + 1])
    more = len(page) > TIMELINE_PAGE
    page = page[:TIMELINE_PAGE]
    next_cursor = f"{page[-1].occurred_at.isoformat()}~{page[-1].pk}" if more else None
    return page, next_cursor


def _profile_context(customer, location) -> dict:
    states = consent_current(customer.pk)
    channels = list(Channel.objects.messaging().active().order_by("name"))
    consent_rows = [{"channel": channel, "state": states.get(channel.pk)} for channel in channels]
    timeline, next_cursor = _timeline_page(customer, None)
    conversations = list(
        customer.conversations.order_by("-last_message_at", "-pk")
        .select_related("started_on")
        .prefetch_related(
            Prefetch(
                "messages",
                queryset=ConversationMessage.objects.select_related("channel", "author").order_by(
                    "-sent_at", "-pk"
                )[:MESSAGES_PER_CONVERSATION],
                to_attr="recent_messages",
            )
        )[:CONVERSATIONS]
    )
    for conversation in conversations:
        conversation.recent_messages.reverse()  # oldest first, as a thread reads
    orders = orders_for_customer(customer.pk, limit=RECENT_ORDERS)
    carts = open_carts_for_customer(customer.pk, limit=OPEN_CARTS)
    return {
        "customer": customer,
        "identities": list(customer.identities.order_by("kind", "value")[:MAX_IDENTITIES]),
        "channel_stats": list(
            customer.channel_stats.select_related("channel").order_by("-last_seen_at")
        ),
        "consent_rows": consent_rows,
        "timeline": timeline,
        "next_cursor": next_cursor,
        "conversations": conversations,
        "orders": orders,
        "carts": carts,
        "note_form": NoteForm(),
        "consent_error": None,
        "opted_in": ConsentStatus.OPTED_IN,
        "opted_out": ConsentStatus.OPTED_OUT,
    }


@store_page
def customer_detail(request, location, pk):
    customer, response = _customer_or_redirect(request, location, pk)
    if response:
        return response
    return render(request, "store/customer.html", _profile_context(customer, location))


@store_page
def customer_timeline_page(request, location, pk):
    customer, response = _customer_or_redirect(request, location, pk)
    if response:
        return response
    cursor = _cursor(request.GET.get("cursor", ""))
    if request.GET.get("cursor") and cursor is None:
        messages.error(request, "That timeline link is broken; showing the newest events.")
    timeline, next_cursor = _timeline_page(customer, cursor)
    return render(
        request,
        "store/customer_timeline.html",
        {"customer": customer, "timeline": timeline, "next_cursor": next_cursor},
    )


def _refused(request, customer, location, **extra):
    context = _profile_context(customer, location)
    context.update(extra)
    return render(request, "store/customer.html", context, status=400)


def _profile_url(location, customer, anchor: str) -> str:
    return reverse("store:customer", args=[location.code, customer.pk]) + anchor


def _who(user) -> str:
    return user.get_full_name() or user.get_username()


@store_page
@require_POST
def customer_consent(request, location, pk):
    """An opt-in or opt-out given at the counter, recorded with the store as its source."""
    customer, response = _customer_or_redirect(request, location, pk)
    if response:
        return response
    form = ConsentForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        return _refused(
            request, customer, location, consent_error=f"Nothing was recorded. {problems}"
        )
    channel = Channel.objects.filter(code=form.cleaned_data["channel"]).first()
    try:
        consent = consent_record(
            customer=customer,
            channel=channel,
            status=form.cleaned_data["status"],
            source=f"store:{location.code}",
            proof=f"At the counter, {_who(request.user)} ({location.name})",
            actor=request.user,
        )
    except OmniError as exc:
        return _refused(request, customer, location, consent_error=error_text(exc))
    verb = "opt-in to" if consent.status == ConsentStatus.OPTED_IN else "opt-out of"
    messages.success(
        request, f"Recorded {customer.name or 'the customer'}'s {verb} {channel.name}."
    )
    return redirect(_profile_url(location, customer, "#consent"))


@store_page
@require_POST
def customer_note(request, location, pk):
    """What the customer asked at the counter, added to her conversation (so whoever answers
    next, on any channel, sees it), with the staff member as its author."""
    customer, response = _customer_or_redirect(request, location, pk)
    if response:
        return response
    form = NoteForm(request.POST)
    if form.is_valid():
        try:
            conversation_message_add(
                customer=customer,
                channel=form.cleaned_data["channel"],
                body=form.cleaned_data["body"],
                source=f"store:{location.code}",
                direction=MessageDirection.INBOUND,
                author=request.user,
            )
        except OmniError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, "Note added to the conversation.")
            return redirect(_profile_url(location, customer, "#conversation"))
    return _refused(request, customer, location, note_form=form)
