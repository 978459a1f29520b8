"""The customers admin for customer service and CRM staff.

Every write calls one ``customers.services`` function: creating a customer with her
identifiers, profile edits, adding and removing identifiers, consent, merges, exports and
erasures, conversation replies and status changes, blocked values, segment counts. A refused
write shows the service's message and changes nothing. Counters (lifetime orders and revenue,
first and last seen) are read-only: touchpoints move them.

The customer list is a big table: it pages without counting, computes no facet counts, sorts
only by indexed columns, and searches by identifiers (normalised like the stored ones, one
indexed lookup), falling back to names only when no identifier matched.

A refusal of what a form holds (an identifier taken or blocked, a customer that cannot be
created) is shown on that form, as typed; what a save did is said once the whole page saved
(``ServiceAdminMixin.note``), never next to the error of a refused one.
"""

import json
import re

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.functions import Left
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from customers import selectors
from customers.forms import (
    ADD_IDENTIFIERS,
    BlockedIdentifierForm,
    ConsentRecordForm,
    ConversationReplyForm,
    CustomerAddForm,
    IdentityInlineForm,
    ReasonForm,
)
from customers.identifiers import guess_identifiers
from customers.models import (
    BlockedIdentifier,
    Consent,
    ConsentState,
    ConsentStatus,
    Conversation,
    ConversationMessage,
    Customer,
    CustomerChannelStat,
    CustomerMerge,
    Identity,
    IdentityKind,
    IdentityKindRule,
    MessageDirection,
    PreferenceSource,
    PrivacyRequest,
    Segment,
    SegmentRule,
    Touchpoint,
)
from customers.segments import segment_queryset
from customers.selectors import (
    consent_current,
    customer_timeline,
    customers_matching,
    survivor_of,
)
from customers.services import (
    MAX_MERGE,
    blocked_identifier_add,
    consent_record,
    conversation_reply,
    conversation_update,
    customer_create,
    customer_erase,
    customer_export,
    customer_merge,
    customer_update,
    identity_add,
    identity_remove,
    merge_survivor,
    segment_count_refresh,
)
from customers.services.profile import EDITABLE
from inventory.models import Location, LocationKind
from omni.admin_utils import (
    BigTableMixin,
    BoundedCountPaginator,
    BoundedInlineMixin,
    FormRefused,
    ReadOnlyAdmin,
    ServiceAdminMixin,
    choices_evaluated_once,
    csv_cell,
    csv_response,
    error_text,
    plural,
)
from omni.exceptions import OmniError
from omni.formats import api_datetime
from omni.models import Channel

# The customer timeline on the change page, newest first.
TIMELINE_PER_PAGE = 50
# The members shown on a segment's page.
SEGMENT_SAMPLE = 20
# A conversation page shows this many of its latest messages.
MAX_MESSAGES = 200
# Touchpoint properties shown on the timeline: this many, each cut to this length.
SHOWN_PROPERTIES, PROPERTY_LENGTH = 5, 40

SEGMENT_CSV_HEADER = [
    "id",
    "name",
    "email",
    "phone",
    "home_store",
    "lifetime_revenue",
    "last_seen_at",
]


def change_url(obj) -> str:
    return reverse(f"admin:customers_{obj._meta.model_name}_change", args=[obj.pk])


def customer_id_term(term: str) -> int | None:
    """``#123`` (or ``123`` in fields that hold customer ids) as a customer id."""
    match = re.fullmatch(r"#?(\d{1,18})", term.strip())
    return int(match.group(1)) if match else None


class ReadOnlyInline(admin.TabularInline):
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Customer list filters --------------------------------------------------------------------


class ChannelUsedFilter(admin.SimpleListFilter):
    """Customers with a touchpoint on the channel (the channel rollup, indexed by channel)."""

    title = "channel used"
    parameter_name = "channel_used"

    def lookups(self, request, model_admin):
        return list(Channel.objects.order_by("code").values_list("code", "name"))

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        used = CustomerChannelStat.objects.filter(
            customer_id=OuterRef("pk"), channel__code=self.value()
        )
        return queryset.filter(Exists(used))


class OptedInFilter(admin.SimpleListFilter):
    """Customers whose current consent on a messaging channel is an opt-in."""

    title = "opted in on"
    parameter_name = "opted_in_on"

    def lookups(self, request, model_admin):
        return list(Channel.objects.messaging().order_by("code").values_list("code", "name"))

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        states = ConsentState.objects.filter(
            customer_id=OuterRef("pk"),
            channel__code=self.value(),
            status=ConsentStatus.OPTED_IN,
        )
        return queryset.filter(Exists(states))


class StoreFilter(admin.RelatedFieldListFilter):
    """Home store: stores only (a warehouse is nobody's home store)."""

    def field_choices(self, field, request, model_admin):
        stores = Location.objects.filter(kind=LocationKind.STORE).order_by("code")
        return [
            (pk, f"{code} · {name}") for pk, code, name in stores.values_list("pk", "code", "name")
        ]


class ErasedFilter(admin.SimpleListFilter):
    title = "erased"
    parameter_name = "erased"

    def lookups(self, request, model_admin):
        return [("no", "No"), ("yes", "Yes")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(erased_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(erased_at__isnull=True)
        return queryset


# --- Customer inlines -------------------------------------------------------------------------


class IdentityInline(admin.TabularInline):
    """Identifiers: existing rows are read-only; a new row is added through ``identity_add``
    and a row marked for deletion removed through ``identity_remove`` (see
    ``CustomerAdmin.save_formset``)."""

    model = Identity
    form = IdentityInlineForm
    extra = 0
    fields = ["kind", "value", "verified", "source", "first_seen_at"]
    readonly_fields = ["source", "first_seen_at"]
    verbose_name_plural = "Identifiers (normalised: emails in lower case, phones in E.164)"

    def has_change_permission(self, request, obj=None):
        return False

    def get_formset(self, request, obj=None, **kwargs):
        # The form's own fields: the value stays out of the model's validation (see the form).
        kwargs["fields"] = IdentityInlineForm.Meta.fields
        return super().get_formset(request, obj, **kwargs)


class ConsentInline(BoundedInlineMixin, ReadOnlyInline):
    """The latest ``max_rows`` consent decisions (the full history is in the export)."""

    model = Consent
    fields = ["channel", "status", "occurred_at", "source", "proof", "recorded_at", "recorded_by"]
    readonly_fields = fields
    parent_attname = "customer_id"
    bounded_order = ("-occurred_at", "-id")
    verbose_name_plural = (
        f"Consent history (newest first, the latest {BoundedInlineMixin.max_rows} are shown; "
        "record one with the button above)"
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("channel", "recorded_by")
            .order_by("-occurred_at", "-id")
        )


class ConversationInline(BoundedInlineMixin, ReadOnlyInline):
    """The latest ``max_rows`` conversations (all of them in the conversation list)."""

    model = Conversation
    fields = ["subject", "status", "started_on", "assignee", "last_message_at"]
    readonly_fields = fields
    show_change_link = True
    parent_attname = "customer_id"
    bounded_order = ("-last_message_at", "-id")
    verbose_name_plural = (
        f"Conversations (the latest {BoundedInlineMixin.max_rows} are shown; search the "
        "conversation list for all)"
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("started_on", "assignee")
            .order_by("-last_message_at", "-id")
        )


# --- Customers --------------------------------------------------------------------------------


PROFILE_FIELDSET = (
    "Profile",
    {
        "fields": [
            ("first_name", "last_name"),
            ("age_range", "gender"),
            ("city", "occupation"),
            ("language", "time_zone"),
        ]
    },
)

CUSTOMER_READONLY = [
    "preferred_channel_source",
    "channels_used",
    "first_seen_at",
    "last_seen_at",
    "last_purchase_at",
    "lifetime_orders",
    "lifetime_revenue",
    "created_at",
    "updated_at",
    "erased_at",
]


@admin.register(Customer)
class CustomerAdmin(BigTableMixin, ServiceAdminMixin, admin.ModelAdmin):
    list_display = [
        "display_name",
        "main_email",
        "main_phone",
        "home_store",
        "preferred_channel",
        "last_seen_at",
        "lifetime_orders",
        "lifetime_revenue",
        "erased",
    ]
    list_filter = [
        ChannelUsedFilter,
        ("home_store", StoreFilter),
        OptedInFilter,
        "age_range",
        "gender",
        ErasedFilter,
    ]
    search_fields = ["first_name"]  # shows the search box; the search itself is below
    search_help_text = (
        "An email, a phone number (any format), a loyalty card or another identifier; "
        "a name; or #id."
    )
    list_select_related = ["home_store", "preferred_channel"]
    autocomplete_fields = ["home_store", "preferred_channel"]
    sortable_by = ["last_seen_at", "lifetime_revenue"]  # both indexed
    ordering = ["-id"]
    list_per_page = 50
    inlines = [IdentityInline, ConsentInline, ConversationInline]
    actions = ["merge_customers"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                main_email=selectors.main_identity(IdentityKind.EMAIL),
                main_phone=selectors.main_identity(IdentityKind.PHONE),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        """``#id``; else any identifier, normalised as stored (``customers_matching``: index
        lookups); names (a scan of the table) only when no identifier matched."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("#") and customer_id_term(term) is not None:
            return queryset.filter(pk=customer_id_term(term)), False
        found = list(customers_matching(term).values_list("pk", flat=True))
        if found:
            return queryset.filter(pk__in=found), False
        name = Q()
        for word in term.split()[:5]:
            name &= Q(first_name__icontains=word) | Q(last_name__icontains=word)
        return queryset.filter(name), False

    # Permissions: customers leave through a merge or an erasure (each a service and an audit
    # row), never a delete; an erased profile is read-only.

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.erased_at is not None:
            return False
        return super().has_change_permission(request, obj)

    # The form: profile fields on the change page; profile and identifiers on the add page.

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (
                    "Identifiers (at least one)",
                    {"fields": [name for name, _ in ADD_IDENTIFIERS]},
                ),
                PROFILE_FIELDSET,
                ("Channels", {"fields": ["home_store", "preferred_channel"]}),
            ]
        return [
            PROFILE_FIELDSET,
            (
                "Channels",
                {
                    "fields": [
                        "home_store",
                        ("preferred_channel", "preferred_channel_source"),
                        "channels_used",
                    ]
                },
            ),
            (
                "Activity (from touchpoints)",
                {
                    "fields": [
                        ("first_seen_at", "last_seen_at"),
                        "last_purchase_at",
                        ("lifetime_orders", "lifetime_revenue"),
                    ]
                },
            ),
            ("Record", {"fields": [("created_at", "updated_at"), "erased_at"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return CUSTOMER_READONLY if obj is not None else []

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = CustomerAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    # List columns.

    @admin.display(description="Name")
    def display_name(self, obj):
        return obj.name or f"(no name) #{obj.pk}"

    @admin.display(description="Email")
    def main_email(self, obj):
        return obj.main_email

    @admin.display(description="Phone")
    def main_phone(self, obj):
        return obj.main_phone

    @admin.display(description="Erased", boolean=True)
    def erased(self, obj):
        return obj.erased_at is not None

    @admin.display(description="Channels used")
    def channels_used(self, obj):
        stats = (
            CustomerChannelStat.objects.filter(customer=obj)
            .select_related("channel")
            .order_by("-touchpoints", "channel__code")
        )
        used = [
            f"{s.channel.name} ({s.channel.code}): {plural(s.touchpoints, 'touchpoint')}, "
            f"last {timezone.localtime(s.last_seen_at):%Y-%m-%d}"
            for s in stats
        ]
        return "; ".join(used) or "-"

    # Saves: customer_create on the add page, customer_update on the change page; identifiers
    # through identity_add and identity_remove. A refusal of customer_create or identity_add is
    # shown on the form that held the values (``FormRefused``); what a save did is noted and
    # shown once the whole page saved (``note``).

    def save_model(self, request, obj, form, change):
        if not change:
            self._create(request, obj, form)
            return
        updated = customer_update(customer=obj, data=profile_changes(form, obj), actor=request.user)
        if updated.changed_fields:
            self.note(request, f"Profile changed: {', '.join(sorted(updated.changed_fields))}.")
        obj.refresh_from_db()

    def _create(self, request, obj, form):
        data = {
            name: form.cleaned_data[name]
            for name in EDITABLE
            if form.cleaned_data.get(name) not in (None, "")
        }
        try:
            created = customer_create(
                data=data,
                identifiers=form.cleaned_data["identifiers"],
                source="admin",
                actor=request.user,
            )
        except OmniError as exc:
            raise FormRefused(form, exc) from exc
        obj.pk = created.pk
        obj.refresh_from_db()
        obj._state.adding = False
        attached = list(created.identities.values_list("kind", "value"))
        self.note(
            request, f"Customer #{created.pk} created with {', '.join(v for _, v in attached)}."
        )
        dropped = [i.value for i in form.cleaned_data["identifiers"] if i.key not in attached]
        if dropped:
            self.note(request, f"Blocked, so not attached: {', '.join(dropped)}.", messages.WARNING)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Identity:
            super().save_formset(request, form, formset, change)
            return
        customer = form.instance
        removed = []
        for identity_form in formset.deleted_forms:
            if identity_form.instance.pk:
                identity_remove(identity=identity_form.instance)
                removed.append(identity_form.instance)
        held = {identity_form.instance.pk for identity_form in formset.initial_forms}
        added, already = [], []
        for identity_form in formset.extra_forms:
            data = getattr(identity_form, "cleaned_data", None)
            if not data or data.get("DELETE") or not identity_form.has_changed():
                continue
            try:
                identity = identity_add(
                    customer=customer,
                    kind=data["kind"],
                    value=data["value"],
                    verified=bool(data.get("verified")),
                    source="admin",
                )
            except OmniError as exc:
                raise FormRefused(identity_form, exc) from exc
            # identity_add returns the customer's own identity when she already holds it.
            (already if identity.pk in held else added).append(identity)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = added, [], removed
        if added:
            self.note(request, f"Added {', '.join(str(i) for i in added)}.")
        if already:
            self.note(
                request,
                f"Already this customer's: {', '.join(str(i) for i in already)}.",
                messages.INFO,
            )
        if removed:
            self.note(request, f"Removed {', '.join(str(i) for i in removed)}.")

    # The change page: timeline, current consents and the buttons.

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and change:
            context.update(self._customer_page(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _customer_page(self, request, customer) -> dict:
        timeline = BoundedCountPaginator(
            customer_timeline(customer.pk).select_related("channel", "location"),
            TIMELINE_PER_PAGE,
        )
        page = timeline.get_page(request.GET.get("timeline_page"))
        states = consent_current(customer.pk)
        channels = [
            c for c in Channel.objects.messaging().order_by("code") if c.is_active or c.pk in states
        ]
        may_change = self.has_change_permission(request, customer)
        return {
            "timeline_page": page,
            "timeline_rows": [
                {
                    "occurred_at": t.occurred_at,
                    "channel": t.channel,
                    "kind": t.get_kind_display(),
                    "location": t.location,
                    "properties": property_summary(t.properties),
                }
                for t in page.object_list
            ],
            "consents": [{"channel": c, "state": states.get(c.pk)} for c in channels],
            "consent_form": ConsentRecordForm(),
            "customer_tools": {
                "consent_url": reverse("admin:customers_customer_consent", args=[customer.pk])
                if may_change
                else None,
                "export_url": reverse("admin:customers_customer_export", args=[customer.pk])
                if self.has_change_permission(request)
                else None,
                "erase_url": reverse("admin:customers_customer_erase", args=[customer.pk])
                if may_change
                else None,
            },
        }

    def get_urls(self):
        def view(function, suffix):
            return path(
                f"<path:object_id>/{suffix}/",
                self.admin_site.admin_view(function),
                name=f"customers_customer_{suffix}",
            )

        return [
            view(self.consent_view, "consent"),
            view(self.export_view, "export"),
            view(self.erase_view, "erase"),
            *super().get_urls(),
        ]

    def _customer_for(self, request, object_id) -> tuple[Customer | None, HttpResponse | None]:
        """The customer of a tool page (consent, export, erase), or the response to give
        instead: a redirect to the customer she was merged into (nothing done, a message says
        so); a 404 when there never was such a customer."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        customer = self.get_object(request, unquote(object_id))
        if customer is not None:
            return customer, None
        pk = customer_id_term(unquote(object_id))
        survivor = survivor_of(pk) if pk is not None else None
        if survivor is None or survivor == pk:
            raise Http404("No such customer.")
        self.message_user(
            request,
            f"Customer #{pk} was merged into customer #{survivor}, shown here; nothing was done.",
            messages.WARNING,
        )
        return None, HttpResponseRedirect(
            reverse("admin:customers_customer_change", args=[survivor])
        )

    def _refuse_erased(self, request, customer):
        """A redirect to the customer's page if she was erased (nothing left to change)."""
        if customer.erased_at is None:
            return None
        self.message_user(request, "This customer was erased; nothing changed.", messages.ERROR)
        return HttpResponseRedirect(change_url(customer))

    def _page(self, request, template, title, customer, **context):
        return TemplateResponse(
            request,
            f"admin/customers/customer/{template}",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "opts": self.opts,
                "customer": customer,
                "customer_url": change_url(customer),
                **context,
            },
        )

    def consent_view(self, request, object_id):
        """Record an opt-in or opt-out the customer gave staff (``consent_record``)."""
        customer, elsewhere = self._customer_for(request, object_id)
        if elsewhere:
            return elsewhere
        if refused := self._refuse_erased(request, customer):
            return refused
        form = ConsentRecordForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            data = form.cleaned_data
            try:
                consent = consent_record(
                    customer=customer,
                    channel=data["channel"],
                    status=data["status"],
                    source="admin",
                    occurred_at=data["occurred_at"],
                    proof=data["proof"],
                    actor=request.user,
                )
            except OmniError as exc:
                self.message_user(
                    request, f"Nothing was recorded. {error_text(exc)}", messages.ERROR
                )
            else:
                what = f"{consent.get_status_display().lower()} on {consent.channel.name}"
                if consent.is_current:
                    text = f"Recorded: {customer} {what}."
                else:
                    text = (
                        f"Recorded in the history: {customer} {what}; a later decision on "
                        f"{consent.channel.name} stays the current one."
                    )
                self.message_user(request, text, messages.SUCCESS)
                return HttpResponseRedirect(change_url(customer))
        states = consent_current(customer.pk)
        return self._page(
            request,
            "consent.html",
            f"Record consent of {customer}",
            customer,
            form=form,
            media=self.media + form.media,
            current=[
                {"channel": state.channel, "state": state}
                for state in sorted(states.values(), key=lambda s: s.channel.code)
            ],
        )

    def export_view(self, request, object_id):
        """Everything held about the customer as a JSON download (``customer_export``, which
        records the request). GET shows the page asking for the reason."""
        customer, elsewhere = self._customer_for(request, object_id)
        if elsewhere:
            return elsewhere
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                data = customer_export(
                    customer=customer,
                    source="admin",
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                )
            except OmniError as exc:
                self.message_user(
                    request, f"Nothing was exported. {error_text(exc)}", messages.ERROR
                )
                return HttpResponseRedirect(change_url(customer))
            response = HttpResponse(
                json.dumps(data, indent=2, ensure_ascii=False),
                content_type="application/json; charset=utf-8",
            )
            response["Content-Disposition"] = f'attachment; filename="customer-{customer.pk}.json"'
            return response
        return self._page(
            request, "export.html", f"Export the data of {customer}", customer, form=form
        )

    def erase_view(self, request, object_id):
        """Confirmation page, then ``customer_erase``."""
        customer, elsewhere = self._customer_for(request, object_id)
        if elsewhere:
            return elsewhere
        if refused := self._refuse_erased(request, customer):
            return refused
        form = ReasonForm(
            request.POST if request.method == "POST" else None,
            required=True,
        )
        if form.is_valid():
            try:
                summary = customer_erase(
                    customer=customer,
                    source="admin",
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                )
            except OmniError as exc:
                self.message_user(request, f"Nothing was erased. {error_text(exc)}", messages.ERROR)
            else:
                removed = ", ".join(
                    plural(count, str(meta.verbose_name), str(meta.verbose_name_plural))
                    for label, count in sorted(summary.items())
                    for meta in [apps.get_model(label)._meta]
                )
                self.message_user(
                    request,
                    f"Erased the personal data of customer #{customer.pk}"
                    + (f": removed {removed}." if removed else "."),
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(change_url(customer))
        held = [
            (Identity._meta.verbose_name_plural, customer.identities.count()),
            (Touchpoint._meta.verbose_name_plural, customer.touchpoints.count()),
            ("consent decisions", customer.consents.count()),
            (Conversation._meta.verbose_name_plural, customer.conversations.count()),
        ]
        return self._page(
            request,
            "erase.html",
            f"Erase the personal data of {customer}",
            customer,
            form=form,
            held=held,
            identities=list(customer.identities.all()),
        )

    # The merge action, with its confirmation page.

    @admin.action(description="Merge selected customers", permissions=["change"])
    def merge_customers(self, request, queryset):
        customers = list(
            queryset.select_related("home_store")
            .prefetch_related("identities")
            .order_by("created_at", "pk")[: MAX_MERGE + 1]
        )
        if len(customers) > MAX_MERGE:
            # customer_merge refuses more (too_many_customers); say so before the confirmation.
            self.message_user(
                request,
                f"A merge takes at most {MAX_MERGE} customers. Nothing changed.",
                messages.ERROR,
            )
            return None
        if len(customers) < 2:
            self.message_user(
                request, "Select at least two customers to merge. Nothing changed.", messages.ERROR
            )
            return None
        confirmed = "confirm" in request.POST
        form = ReasonForm(
            request.POST if confirmed else None, initial_reason="Same person (merged by staff)"
        )
        if confirmed and form.is_valid():
            try:
                survivor, records = customer_merge(
                    customers=[c.pk for c in customers],
                    actor=request.user,
                    source="admin",
                    reason=form.cleaned_data["reason"] or "Merged by staff",
                )
            except OmniError as exc:
                self.message_user(request, f"Nothing changed. {error_text(exc)}", messages.ERROR)
                return None
            folded = ", ".join(f"#{r.merged_customer_id}" for r in records)
            self.message_user(
                request,
                f"Merged {len(records) + 1} customers into #{survivor.pk} ({folded} folded in).",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(change_url(survivor))
        survivor = merge_survivor(customers)  # the one customer_merge keeps
        return TemplateResponse(
            request,
            "admin/customers/customer/merge.html",
            {
                **self.admin_site.each_context(request),
                "title": "Merge customers",
                "opts": self.opts,
                "form": form,
                "survivor": survivor,
                "customers": [
                    {
                        "customer": c,
                        "url": change_url(c),
                        "survives": c.pk == survivor.pk,
                        "identities": sorted(str(i) for i in c.identities.all()),
                    }
                    for c in customers
                ],
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "selected": [str(c.pk) for c in customers],
            },
        )


def profile_changes(form, customer) -> dict:
    """The change form's profile for ``customer_update``: every editable field (the service
    says which ones changed and stamps only those). The preferred channel only when staff
    picked another one: the form shows an inferred channel like a chosen one, and sending it
    back would turn the inference into the customer's choice."""
    data = {name: form.cleaned_data[name] for name in EDITABLE if name in form.cleaned_data}
    if (
        customer.preferred_channel_source != PreferenceSource.CUSTOMER
        and "preferred_channel" not in form.changed_data
    ):
        data.pop("preferred_channel", None)
    return data


def property_summary(properties) -> str:
    """A touchpoint's first few properties (by name), each cut short, for the timeline."""
    if not isinstance(properties, dict) or not properties:
        return ""
    parts = []
    for key, value in sorted(properties.items())[:SHOWN_PROPERTIES]:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}: {Truncator(text).chars(PROPERTY_LENGTH)}")
    if len(properties) > SHOWN_PROPERTIES:
        parts.append("…")
    return ", ".join(parts)


# --- Conversations ----------------------------------------------------------------------------


class AssigneeFilter(admin.SimpleListFilter):
    title = "assignee"
    parameter_name = "assignee"

    def lookups(self, request, model_admin):
        staff = get_user_model().objects.filter(is_staff=True).order_by("username")
        return [("none", "Unassigned"), *((str(u.pk), u.get_username()) for u in staff)]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(assignee__isnull=True)
        if self.value() and self.value().isdigit():
            return queryset.filter(assignee_id=int(self.value()))
        return queryset


class MessageInline(BoundedInlineMixin, ReadOnlyInline):
    """The thread, oldest first, with the channel of each message (a conversation that began
    on social media and went on by email shows both); its latest ``max_rows`` messages."""

    model = ConversationMessage
    fields = ["sent_at", "direction", "channel", "body", "author", "source"]
    readonly_fields = fields
    parent_attname = "conversation_id"
    max_rows = MAX_MESSAGES
    bounded_order = ("-sent_at", "-id")
    verbose_name_plural = f"Messages (oldest first; the latest {MAX_MESSAGES} are shown)"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("channel", "author")
            .order_by("sent_at", "id")
        )


@admin.register(Conversation)
class ConversationAdmin(BigTableMixin, ServiceAdminMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "customer_link",
        "status",
        "started_on",
        "assignee",
        "last_message",
        "last_message_at",
    ]
    list_filter = ["status", AssigneeFilter, "started_on"]
    search_fields = ["subject"]
    search_help_text = "The customer's email, phone or other identifier; #id; or the subject."
    list_select_related = ["customer", "started_on", "assignee"]
    ordering = ["-last_message_at", "-id"]
    sortable_by = ["last_message_at"]
    inlines = [MessageInline]
    fields = [
        "customer_link",
        "subject",
        ("status", "assignee"),
        "started_on",
        ("created_at", "last_message_at", "closed_at"),
    ]
    readonly_fields = [
        "customer_link",
        "subject",
        "started_on",
        "created_at",
        "last_message_at",
        "closed_at",
    ]

    def get_queryset(self, request):
        last = ConversationMessage.objects.filter(conversation=OuterRef("pk")).order_by(
            "-sent_at", "-id"
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_snippet=Subquery(last.annotate(s=Left("body", 80)).values("s")[:1]),
                last_channel=Subquery(last.values("channel__code")[:1]),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("#") and customer_id_term(term) is not None:
            return queryset.filter(pk=customer_id_term(term)), False
        condition = Q(customer__in=customers_matching(term).values("pk")) | Q(
            subject__icontains=term
        )
        return queryset.filter(condition), False

    def has_add_permission(self, request):
        return False  # a conversation starts with a message (conversation_message_add)

    def has_delete_permission(self, request, obj=None):
        return False  # support history; erasing the customer removes it

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "assignee":
            # Only staff take conversations (the service refuses anyone else).
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="Customer")
    def customer_link(self, obj):
        return format_html('<a href="{}">{}</a>', change_url(obj.customer), obj.customer)

    @admin.display(description="Last message")
    def last_message(self, obj):
        if not obj.last_snippet:
            return "-"
        return f"[{obj.last_channel}] {Truncator(obj.last_snippet).chars(60)}"

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in ("status", "assignee")}
        changes = {name: value for name, value in changes.items() if name in form.changed_data}
        if changes:
            conversation_update(conversation=obj, actor=request.user, **changes)
            self.note(request, f"Conversation #{obj.pk}: {', '.join(sorted(changes))} changed.")
        obj.refresh_from_db()

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and change and self.has_change_permission(request, obj):
            inbound = (
                obj.messages.filter(direction=MessageDirection.INBOUND)
                .order_by("-sent_at", "-id")
                .values_list("channel_id", flat=True)
                .first()
            )
            context["reply_form"] = ConversationReplyForm(
                conversation=obj, initial={"channel": inbound or obj.started_on_id}
            )
            context["reply_url"] = reverse("admin:customers_conversation_reply", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/reply/",
                self.admin_site.admin_view(self.reply_view),
                name="customers_conversation_reply",
            ),
            *super().get_urls(),
        ]

    def reply_view(self, request, object_id):
        """A staff answer on the chosen channel (``conversation_reply``)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conversation = (
            Conversation.objects.select_related("customer")
            .filter(pk=customer_id_term(unquote(object_id)) or 0)
            .first()
        )
        if conversation is None:
            raise Http404("No such conversation.")
        if not self.has_change_permission(request, conversation):
            raise PermissionDenied
        form = ConversationReplyForm(request.POST, conversation=conversation)
        if not form.is_valid():
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            self.message_user(request, f"Nothing was sent. {problems}", messages.ERROR)
            return HttpResponseRedirect(change_url(conversation))
        try:
            message = conversation_reply(
                conversation=conversation,
                channel=form.cleaned_data["channel"],
                body=form.cleaned_data["body"],
                author=request.user,
            )
        except OmniError as exc:
            self.message_user(request, f"Nothing was sent. {error_text(exc)}", messages.ERROR)
        else:
            self.message_user(
                request,
                f"Reply sent on {message.channel.name}; the conversation waits for the customer.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(change_url(conversation))


# --- Segments ---------------------------------------------------------------------------------


class SegmentRuleInline(admin.TabularInline):
    """Rules; each kind reads some fields (``SegmentRule.clean`` says which)."""

    model = SegmentRule
    extra = 0
    fields = [
        "kind",
        "negate",
        "channel",
        "days",
        "amount",
        "location",
        "attribute",
        "value",
        "touchpoint_kind",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel", "location")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return choices_evaluated_once(super().formfield_for_foreignkey(db_field, request, **kwargs))


def segment_csv_rows(segment):
    """The CSV of a segment's members, header first, read in chunks. Names and emails are free
    text, guarded against spreadsheet formulas; phones are E.164 (``+`` and digits) as stored.

    The rows come from ``selectors.segment_member_rows``."""
    yield SEGMENT_CSV_HEADER
    members = selectors.segment_member_rows(segment)
    for pk, first, last, email, phone, store, revenue, seen in members.iterator(chunk_size=2000):
        yield [
            pk,
            csv_cell(f"{first} {last}".strip()),
            csv_cell(email or ""),
            phone or "",
            store or "",
            f"{revenue:.2f}",
            api_datetime(seen) or "",
        ]


def segment_csv_response(segment):
    return csv_response(segment_csv_rows(segment), f"segment-{segment.pk}.csv")


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ["name", "match", "rule_summary", "member_count", "counted_at", "updated_at"]
    list_filter = ["match"]
    search_fields = ["name", "description"]
    list_select_related = []
    inlines = [SegmentRuleInline]
    fields = ["name", "description", "match", ("member_count", "counted_at")]
    readonly_fields = ["member_count", "counted_at"]
    actions = ["export_members", "refresh_counts"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("rules__channel", "rules__location")

    @admin.display(description="Rules")
    def rule_summary(self, obj):
        rules = [str(rule) for rule in obj.rules.all()]
        if not rules:
            return "every customer"
        return f" {'and' if obj.match == 'all' else 'or'} ".join(rules)

    def has_export_permission(self, request) -> bool:
        """Exporting members hands out customers' personal data: it takes the permission to
        view customers as well as segments."""
        return self.has_view_permission(request) and request.user.has_perm(
            f"{Customer._meta.app_label}.view_{Customer._meta.model_name}"
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and change:
            members = segment_queryset(obj)
            context["live_count"] = members.count()
            may_see_members = self.has_export_permission(request)
            context["sample"] = (
                list(
                    members.annotate(
                        email=selectors.main_identity(IdentityKind.EMAIL),
                        phone=selectors.main_identity(IdentityKind.PHONE),
                    )
                    .select_related("home_store")
                    .order_by("-pk")[:SEGMENT_SAMPLE]
                )
                if may_see_members
                else None
            )
            context["export_url"] = (
                reverse("admin:customers_segment_export", args=[obj.pk])
                if may_see_members
                else None
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/members.csv",
                self.admin_site.admin_view(self.export_view),
                name="customers_segment_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request, object_id):
        if not self.has_export_permission(request):
            raise PermissionDenied
        segment = self.get_object(request, unquote(object_id))
        if segment is None:
            raise Http404("No such segment.")
        return segment_csv_response(segment)

    @admin.action(description="Export members as CSV (one segment)", permissions=["export"])
    def export_members(self, request, queryset):
        segments = list(queryset[:2])
        if len(segments) != 1:
            self.message_user(request, "Select exactly one segment to export.", messages.ERROR)
            return None
        return segment_csv_response(segments[0])

    @admin.action(description="Refresh counts", permissions=["change"])
    def refresh_counts(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        counted = segment_count_refresh(segment_ids=ids)
        self.message_user(request, f"Counted the members of {plural(counted, 'segment')}.")


# --- Identifier settings ----------------------------------------------------------------------


@admin.register(IdentityKindRule)
class IdentityKindRuleAdmin(admin.ModelAdmin):
    """Whether an identifier kind may merge two customers; one row per kind, seeded."""

    list_display = ["kind", "may_merge", "updated_at"]
    list_editable = ["may_merge"]
    list_filter = ["may_merge"]
    search_fields = ["kind"]
    list_select_related = []
    fields = ["kind", "may_merge", "updated_at"]
    readonly_fields = ["kind", "updated_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(BlockedIdentifier)
class BlockedIdentifierAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = BlockedIdentifierForm
    list_display = ["kind", "value", "reason", "created_at"]
    list_filter = ["kind"]
    search_fields = ["value", "reason"]
    search_help_text = "The value as typed anywhere (it is compared once normalised), or a reason."
    list_select_related = []
    readonly_fields = ["created_at"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        values = {value for _, value in guess_identifiers(term)}
        condition = Q(value__in=values) | Q(value__icontains=term) | Q(reason__icontains=term)
        return queryset.filter(condition), False

    def has_change_permission(self, request, obj=None):
        # A blocked value is added or deleted (unblocked), never edited.
        return obj is None and super().has_change_permission(request)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            blocked = blocked_identifier_add(
                kind=data["kind"], value=data["value"], reason=data["reason"]
            )
        except OmniError as exc:
            raise FormRefused(form, exc) from exc
        obj.pk = blocked.pk
        obj.refresh_from_db()
        obj._state.adding = False
        text = f"Blocked {blocked.get_kind_display().lower()} {blocked.value}."
        if blocked.unlinked:
            whom = "customer" if len(blocked.unlinked) == 1 else "customers"
            ids = ", ".join(f"#{pk}" for pk in blocked.unlinked)
            text += f" It was removed from {whom} {ids}."
        self.note(request, text)


# --- Read-only records ------------------------------------------------------------------------


@admin.register(CustomerMerge)
class CustomerMergeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "survivor", "merged_customer_id", "reason", "source", "actor"]
    list_filter = ["source"]
    search_fields = ["=merged_customer_id"]
    search_help_text = "A customer id (the survivor or the merged one)."
    list_select_related = ["survivor", "actor"]
    paginator = BoundedCountPaginator
    show_facets = admin.ShowFacets.NEVER

    def get_search_results(self, request, queryset, search_term):
        customer_id = customer_id_term(search_term)
        if customer_id is None:
            return (queryset.none() if search_term.strip() else queryset), False
        return (
            queryset.filter(Q(survivor_id=customer_id) | Q(merged_customer_id=customer_id)),
            False,
        )


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "customer_link", "reason", "source", "actor"]
    list_filter = ["kind", "source"]
    search_fields = ["=customer_id_ref"]
    search_help_text = "A customer id."
    list_select_related = ["actor"]
    paginator = BoundedCountPaginator
    show_facets = admin.ShowFacets.NEVER

    def get_search_results(self, request, queryset, search_term):
        customer_id = customer_id_term(search_term)
        if customer_id is None:
            return (queryset.none() if search_term.strip() else queryset), False
        return queryset.filter(customer_id_ref=customer_id), False

    @admin.display(description="Customer")
    def customer_link(self, obj):
        url = reverse("admin:customers_customer_change", args=[obj.customer_id_ref])
        return format_html('<a href="{}">#{}</a>', url, obj.customer_id_ref)


@admin.register(Touchpoint)
class TouchpointAdmin(BigTableMixin, ReadOnlyAdmin):
    list_display = [
        "occurred_at",
        "customer",
        "channel",
        "kind",
        "location",
        "source",
        "event_id",
        "received_at",
    ]
    list_filter = ["kind", "channel"]
    search_fields = ["=event_id"]  # shows the search box; the search itself is below
    search_help_text = "The customer's email, phone or other identifier, or #customer id."
    list_select_related = ["customer", "channel", "location"]
    ordering = ["-occurred_at", "-id"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("#") and customer_id_term(term) is not None:
            return queryset.filter(customer_id=customer_id_term(term)), False
        return queryset.filter(customer__in=customers_matching(term).values("pk")), False
