"""The inventory admin for ops managers and merchandisers.

Quantities with rules are read-only here: they change through actions and forms that call one
``inventory.services`` function each, so the admin meets the rules and errors the API and the
store pages meet. The big tables (stock levels, the ledger, reservations, availability,
discrepancies) page without counting, filter on indexed columns, search by exact values and
sort only in the order their index serves.
"""

import logging

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from catalog.models import Variant
from catalog.validators import normalize_sku
from inventory.forms import (
    LocationActionForm,
    StockAdjustForm,
    StockCountForm,
    StockReceiveForm,
    StockRuleFormSet,
    TransferForm,
)
from inventory.models import (
    ChannelAvailability,
    ChannelStockPolicy,
    ChannelStockRule,
    CountTolerance,
    Discrepancy,
    DiscrepancyStatus,
    Location,
    MovementBatch,
    MovementKind,
    ReconciliationRun,
    ReorderRule,
    ReplenishmentSuggestion,
    Reservation,
    ReservationStatus,
    StockCount,
    StockCountLine,
    StockLevel,
    StockMovement,
    Transfer,
    TransferLine,
)
from inventory.services import (
    availability_refresh,
    availability_state,
    discrepancy_approve,
    discrepancy_reject,
    reorder_suggest,
    stock_adjust,
    stock_count_cancel,
    stock_count_request,
    stock_count_submit,
    stock_level_set_safety_stock,
    stock_receive,
    stock_reconcile,
    stock_release,
    suggestion_create_transfer,
    suggestion_dismiss,
    suggestion_mark_ordered,
    transfer_cancel,
    transfer_receive,
    transfer_request,
    transfer_ship,
)
from inventory.tasks import refresh_availability
from omni.admin_utils import (
    MAX_INLINE_ROWS,
    BigTableMixin,
    BoundedCountPaginator,
    BoundedInlineMixin,
    ReadOnlyAdmin,
    ServiceActionsMixin,
    ServiceAdminMixin,
    error_text,
    plural,
    register_channel_inline,
    register_channel_saved,
)
from omni.exceptions import OmniError
from omni.models import Channel

logger = logging.getLogger(__name__)

# --- Shared behaviour -------------------------------------------------------------------------


class ExactSearchMixin:
    """Search by exact values an index serves, never ``ILIKE '%…%'`` over millions of rows.

    The term is first taken as a SKU (normalised like every SKU; one lookup on its unique
    index) and filters ``sku_lookup`` by that variant's id; if no variant has that SKU, the
    ``exact_lookups`` are compared with the term as typed.
    """

    sku_lookup = "variant_id"
    exact_lookups: tuple[str, ...] = ()
    search_fields = ["=variant__sku"]  # shows the search box; the search itself is below
    search_help_text = "Exact SKU."

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if self.sku_lookup:
            variant_id = (
                Variant.objects.filter(sku=normalize_sku(term)).values_list("pk", flat=True).first()
            )
            if variant_id is not None:
                return queryset.filter(**{self.sku_lookup: variant_id}), False
        if not self.exact_lookups:
            return queryset.none(), False
        condition = Q()
        for lookup in self.exact_lookups:
            condition |= Q(**{lookup: term})
        return queryset.filter(condition), False


class ChangedByActionsOnly:
    """Rows that change only through the list's actions (each calls a service): no add form,
    a read-only page, no delete. The change permission is what lets staff run the actions."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False


class CreatedByServiceOnly:
    """Rows created through a form that calls a service, then changed only by actions: the
    page of an existing row is read-only, and nothing is deleted."""

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False


class LinesOnAddOnly:
    """Inline lines typed on the add page and read-only afterwards."""

    extra = 0

    def has_add_permission(self, request, obj=None):
        return obj is None and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return obj is None and super().has_delete_permission(request, obj)


def changelist_url(model, **params) -> str:
    url = reverse(f"admin:inventory_{model._meta.model_name}_changelist")
    if params:
        url += "?" + "&".join(f"{key}={value}" for key, value in params.items())
    return url


# --- Locations --------------------------------------------------------------------------------


@admin.register(Location)
class LocationAdmin(ServiceActionsMixin, admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "kind",
        "city",
        "country",
        "ships_online_orders",
        "offers_pickup",
        "safety_stock",
        "is_active",
        "count_requested_at",
    ]
    list_filter = ["kind", "is_active", "ships_online_orders", "offers_pickup"]
    search_fields = ["code", "name", "city"]
    list_select_related = []
    ordering = ["code"]
    action_form = LocationActionForm
    actions = ["request_count"]
    fieldsets = [
        ("Identity", {"fields": ["code", "name", "kind", "is_active"]}),
        (
            "Address",
            {
                "fields": [
                    "address_line1",
                    "address_line2",
                    ("postal_code", "city"),
                    "country",
                    "time_zone",
                ]
            },
        ),
        (
            "Coordinates",
            {
                "fields": [("latitude", "longitude")],
                "description": "Used to serve orders from the nearest location.",
            },
        ),
        ("Fulfilment", {"fields": ["ships_online_orders", "offers_pickup"]}),
        ("Safety stock", {"fields": ["safety_stock"]}),
        ("Counts", {"fields": ["count_requested_at"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        # Integrators (POS, API) address a location by its code: fixed once created.
        return ["code", "count_requested_at"] if obj else ["count_requested_at"]

    def has_delete_permission(self, request, obj=None):
        # Stock, the ledger and orders point at locations: deactivate one instead.
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and {"is_active", "safety_stock"} & set(form.changed_data):
            transaction.on_commit(refresh_availability.delay, robust=True)
            self.message_user(
                request,
                "Channel availability is being recomputed for the new safety stock or status.",
                messages.INFO,
            )

    @admin.action(description="Request a count (reason in the action bar)", permissions=["change"])
    def request_count(self, request, queryset):
        reason = (request.POST.get("reason") or "").strip() or "Requested in the admin."
        created = existing = 0
        for location in queryset:
            had_request = location.count_requested_at is not None
            stock_count_request(location=location, reason=reason, actor=request.user)
            if had_request:
                existing += 1
            else:
                created += 1
        parts = []
        if created:
            parts.append(f"Count requested at {plural(created, 'location')}")
        if existing:
            parts.append(f"{plural(existing, 'location')} already had an open request")
        self.message_user(request, "; ".join(parts) + ".", messages.SUCCESS)


# --- Stock levels -----------------------------------------------------------------------------


@admin.register(StockLevel)
class StockLevelAdmin(BigTableMixin, ExactSearchMixin, ServiceActionsMixin, admin.ModelAdmin):
    list_display = [
        "location",
        "sku",
        "product_title",
        "on_hand",
        "reserved",
        "safety",
        "available",
        "updated_at",
    ]
    list_filter = ["location"]
    list_select_related = ["location", "variant__product"]
    # The unique index (location, variant) serves this order, filtered by a location or not.
    ordering = ["location_id", "variant_id"]
    fields = [
        "location",
        "variant",
        "on_hand",
        "reserved",
        "safety_stock",
        "location_safety_stock",
        "available",
        "updated_at",
    ]
    readonly_fields = [
        "location",
        "variant",
        "on_hand",
        "reserved",
        "location_safety_stock",
        "available",
        "updated_at",
    ]
    actions = ["adjust_stock", "receive_stock"]

    def has_add_permission(self, request):
        # Stock arrives through receipts, transfers and counts, not by typing a number.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="SKU")
    def sku(self, obj):
        return obj.variant.sku

    @admin.display(description="Product")
    def product_title(self, obj):
        return obj.variant.product.title

    @admin.display(description="Safety")
    def safety(self, obj):
        return obj.location.safety_stock if obj.safety_stock is None else obj.safety_stock

    @admin.display(description="Available")
    def available(self, obj):
        return max(0, obj.on_hand - obj.reserved - self.safety(obj))

    @admin.display(description="Location's safety stock")
    def location_safety_stock(self, obj):
        return obj.location.safety_stock

    def save_model(self, request, obj, form, change):
        # Only the safety stock is editable; on_hand and reserved are left to the services.
        stock_level_set_safety_stock(stock_level=obj, safety_stock=obj.safety_stock)
        self.message_user(
            request,
            f"Safety stock saved; the channel availability of {obj.variant.sku} follows.",
            messages.INFO,
        )

    # Actions with an intermediate form: the form posts back to the list with the selection.

    @admin.action(
        description="Adjust stock… (a signed quantity and a reason)", permissions=["change"]
    )
    def adjust_stock(self, request, queryset):
        def apply(row, data):
            stock_adjust(
                location=row.location,
                variant=row.variant,
                quantity=data["quantity"],
                reason=data["reason"],
                source="admin",
                actor=request.user,
            )

        def done(rows, data):
            return (
                f"Adjusted {plural(len(rows), 'stock row')} by {data['quantity']:+d} "
                f"unit{'s' if abs(data['quantity']) != 1 else ''} each "
                f"(reason: {data['reason']})."
            )

        return self._stock_form_action(
            request,
            queryset,
            action="adjust_stock",
            form_class=StockAdjustForm,
            title="Adjust stock",
            intro="The change is added to what each selected row holds and recorded in the "
            "ledger as an adjustment. A row may not fall below what is reserved there. All "
            "rows change, or none.",
            submit="Adjust stock",
            apply=apply,
            done=done,
        )

    @admin.action(description="Receive stock… (a quantity and a reference)", permissions=["change"])
    def receive_stock(self, request, queryset):
        def apply(row, data):
            stock_receive(
                location=row.location,
                variant=row.variant,
                quantity=data["quantity"],
                reference=data["reference"],
                source="admin",
                actor=request.user,
            )

        def done(rows, data):
            reference = f" (reference {data['reference']})" if data["reference"] else ""
            return (
                f"Received {plural(data['quantity'], 'unit')} into each of "
                f"{plural(len(rows), 'stock row')}{reference}."
            )

        return self._stock_form_action(
            request,
            queryset,
            action="receive_stock",
            form_class=StockReceiveForm,
            title="Receive stock",
            intro="Goods arrived: each selected row receives the quantity, recorded in the "
            "ledger as a receipt. All rows change, or none.",
            submit="Receive",
            apply=apply,
            done=done,
        )

    def _stock_form_action(
        self, request, queryset, *, action, form_class, title, intro, submit, apply, done
    ):
        rows = self.bounded_rows(request, queryset.select_related("location", "variant__product"))
        if rows is None:
            return None
        rows.sort(key=lambda row: row.pk)  # the stock lock order
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            row = None
            try:
                with transaction.atomic():
                    for row in rows:
                        apply(row, form.cleaned_data)
            except OmniError as exc:
                where = f"{row.location.code} / {row.variant.sku}: " if row else ""
                self.message_user(
                    request, f"Nothing changed. {where}{error_text(exc)}", messages.ERROR
                )
            else:
                self.message_user(request, done(rows, form.cleaned_data), messages.SUCCESS)
                return None  # back to the list
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "submit": submit,
            "opts": self.model._meta,
            "form": form,
            "rows": [
                {
                    "location": row.location,
                    "sku": row.variant.sku,
                    "product": row.variant.product.title,
                    "on_hand": row.on_hand,
                    "reserved": row.reserved,
                    "available": self.available(row),
                }
                for row in rows
            ],
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across") == "1",
        }
        return TemplateResponse(request, "admin/inventory/stock_action.html", context)


# --- The ledger, batches, reservations, availability ------------------------------------------


class OccurredAtFilter(admin.DateFieldListFilter):
    """The ledger's date filter: a range on ``occurred_at`` (today, the past 7 days, ...), never
    a date() of the column. Without a kind chosen it names every kind, so the (kind,
    occurred_at) index serves the range instead of a scan of the whole ledger."""

    def queryset(self, request, queryset):
        queryset = super().queryset(request, queryset)
        if self.used_parameters:
            queryset = queryset.filter(kind__in=MovementKind.values)
        return queryset


@admin.register(StockMovement)
class StockMovementAdmin(BigTableMixin, ExactSearchMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "occurred_at",
        "location",
        "sku",
        "kind",
        "signed_quantity",
        "channel",
        "source",
        "reference",
        "reason",
        "actor",
    ]
    list_filter = ["kind", "location", ("occurred_at", OccurredAtFilter)]
    list_select_related = ["location", "variant", "channel", "actor"]
    ordering = ["-id"]
    exact_lookups = ("reference",)
    search_help_text = "Exact SKU, or else an exact reference (e.g. TR-000012)."

    @admin.display(description="SKU")
    def sku(self, obj):
        return obj.variant.sku

    @admin.display(description="Quantity")
    def signed_quantity(self, obj):
        return f"{obj.quantity:+d}"


@admin.register(MovementBatch)
class MovementBatchAdmin(BigTableMixin, ReadOnlyAdmin):
    list_display = [
        "batch_id",
        "source",
        "location",
        "movement_count",
        "applied_count",
        "duplicate_count",
        "received_at",
    ]
    list_filter = ["location"]
    search_fields = ["=batch_id", "=source"]
    list_select_related = ["location"]
    ordering = ["-id"]


class NeedsAttentionFilter(admin.SimpleListFilter):
    """Active reservations a store sale left short (the partial index on active ones that need
    attention serves "yes"; closing a reservation clears the flag)."""

    title = "needs attention"
    parameter_name = "needs_attention"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=ReservationStatus.ACTIVE, needs_attention=True)
        if self.value() == "no":
            return queryset.filter(needs_attention=False)
        return queryset


@admin.register(Reservation)
class ReservationAdmin(
    BigTableMixin, ExactSearchMixin, ServiceActionsMixin, ChangedByActionsOnly, admin.ModelAdmin
):
    list_display = [
        "id",
        "reference",
        "line_reference",
        "kind",
        "status",
        "location",
        "sku",
        "quantity",
        "channel",
        "pinned",
        "needs_attention",
        "expires_at",
        "created_at",
    ]
    list_filter = ["status", "kind", NeedsAttentionFilter, "location"]
    list_select_related = ["location", "variant", "channel"]
    ordering = ["-id"]
    sku_lookup = None
    exact_lookups = ("reference",)
    search_fields = ["=reference"]
    search_help_text = "Exact reference (order, checkout or transfer:TR-…)."
    actions = ["release"]

    @admin.display(description="SKU")
    def sku(self, obj):
        return obj.variant.sku

    @admin.action(description="Release the held stock", permissions=["change"])
    def release(self, request, queryset):
        rows = self.bounded_rows(request, queryset)
        if rows is None:
            return
        active = [r for r in rows if r.status == ReservationStatus.ACTIVE]
        try:
            units = stock_release(reservations=active) if active else 0
        except OmniError as exc:
            self.message_user(request, f"Nothing changed. {error_text(exc)}", messages.ERROR)
            return
        message = f"Released {plural(units, 'unit')} held by {plural(len(active), 'reservation')}."
        if len(rows) > len(active):
            message += f" {len(rows) - len(active)} not active (nothing to release)."
        self.message_user(request, message, messages.SUCCESS if active else messages.WARNING)


class SalesChannelFilter(admin.RelatedFieldListFilter):
    def field_choices(self, field, request, model_admin):
        return [(c.pk, str(c)) for c in Channel.objects.sales().order_by("code")]


@admin.register(ChannelAvailability)
class ChannelAvailabilityAdmin(BigTableMixin, ExactSearchMixin, ReadOnlyAdmin):
    list_display = ["sku", "product_title", "channel", "quantity", "state", "updated_at"]
    list_filter = [("channel", SalesChannelFilter), "is_low_stock"]
    list_select_related = ["variant__product", "channel"]
    ordering = ["variant_id", "channel_id"]  # the unique index (variant, channel)

    @admin.display(description="SKU")
    def sku(self, obj):
        return obj.variant.sku

    @admin.display(description="Product")
    def product_title(self, obj):
        return obj.variant.product.title

    @admin.display(description="State")
    def state(self, obj):
        return availability_state(obj.quantity, obj.is_low_stock).replace("_", " ")


# --- Channel stock policy and rules, on the channel page --------------------------------------


def _sales_channel_or_new(channel) -> bool:
    return channel is None or channel.is_sales


@register_channel_inline
class ChannelStockPolicyInline(admin.StackedInline):
    model = ChannelStockPolicy
    extra = 0
    max_num = 1
    fields = [
        ("buffer", "exposed_percent", "cap"),
        "low_stock_threshold",
        "allocation_strategy",
        "checkout_hold_minutes",
    ]
    verbose_name_plural = "Stock policy (without one: no buffer, all of the stock, no cap)"
    shown_for = staticmethod(_sales_channel_or_new)


@register_channel_inline
class ChannelStockRuleInline(admin.TabularInline):
    model = ChannelStockRule
    formset = StockRuleFormSet
    extra = 0
    fields = ["location", "priority", "buffer"]
    autocomplete_fields = ["location"]
    verbose_name_plural = "Locations feeding this channel (stock rules)"
    shown_for = staticmethod(_sales_channel_or_new)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location")


@register_channel_saved
def refresh_channel_availability(*, request, channel, form, formsets):
    """Recompute what the channel may promise once its stock policy or rules changed."""
    changed = any(
        formset.model in (ChannelStockPolicy, ChannelStockRule) and formset.has_changed()
        for formset in formsets
    )
    if not changed and "kind" not in form.changed_data:
        return None
    result = availability_refresh(channel_ids=[channel.pk])
    return (
        f"Availability on {channel.name} recomputed: {plural(result.rows_written, 'row')} "
        f"changed for {plural(result.variants, 'variant')}."
    )


# --- Counts, tolerances, reconciliation, discrepancies ----------------------------------------


class StockCountLineInline(LinesOnAddOnly, BoundedInlineMixin, admin.TabularInline):
    model = StockCountLine
    fields = ["variant", "counted_quantity", "expected_quantity"]
    readonly_fields = ["expected_quantity"]
    autocomplete_fields = ["variant"]
    parent_attname = "count_id"
    verbose_name_plural = f"Lines (the first {MAX_INLINE_ROWS} are shown)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("variant")


@admin.register(StockCount)
class StockCountAdmin(
    ServiceAdminMixin, ServiceActionsMixin, CreatedByServiceOnly, admin.ModelAdmin
):
    form = StockCountForm
    list_display = [
        "id",
        "location",
        "kind",
        "status",
        "line_count",
        "requested_at",
        "counted_at",
        "submitted_at",
        "reconciled_at",
        "reference",
        "source",
    ]
    list_filter = ["status", "kind", "location"]
    search_fields = ["=reference", "=location__code"]
    list_select_related = ["location"]
    autocomplete_fields = ["location"]
    inlines = [StockCountLineInline]
    ordering = ["-id"]
    paginator = BoundedCountPaginator
    show_full_result_count = False
    actions = ["cancel"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["location", "kind", "counted_at", "reference"]
        return [
            "location",
            "kind",
            "status",
            "reason",
            "reference",
            "source",
            "requested_at",
            "counted_at",
            "submitted_at",
            "submitted_by",
            "reconciled_at",
            "run",
        ]

    def save_model(self, request, obj, form, change):
        pass  # saved with its lines by stock_count_submit, in save_related

    def save_related(self, request, form, formsets, change):
        lines = []
        for formset in formsets:
            lines += [
                {
                    "variant": f.cleaned_data["variant"],
                    "quantity": f.cleaned_data["counted_quantity"],
                }
                for f in formset.forms
                if getattr(f, "cleaned_data", None) and not f.cleaned_data.get("DELETE")
            ]
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        count = stock_count_submit(
            location=form.cleaned_data["location"],
            counted_at=form.cleaned_data["counted_at"],
            kind=form.cleaned_data["kind"],
            reference=form.cleaned_data.get("reference", ""),
            lines=lines,
            source="admin",
            actor=request.user,
        )
        form.instance.pk = count.pk
        form.instance.refresh_from_db()
        self.message_user(
            request,
            f"Count #{count.pk} of {count.location.code} recorded with "
            f"{plural(len(lines), 'line')}; the next reconciliation compares it with the ledger.",
            messages.SUCCESS,
        )

    @admin.action(description="Cancel", permissions=["change"])
    def cancel(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda count: stock_count_cancel(count=count),
            done=lambda n: f"Cancelled {plural(n, 'count')}.",
            label=lambda count: f"Count #{count.pk}",
        )


@admin.register(CountTolerance)
class CountToleranceAdmin(admin.ModelAdmin):
    list_display = ["applies_to", "max_units", "max_percent"]
    list_filter = [("location", admin.EmptyFieldListFilter)]
    search_fields = ["location__code", "location__name"]
    list_select_related = ["location"]
    autocomplete_fields = ["location"]
    fields = ["location", "max_units", "max_percent"]

    @admin.display(description="Applies to", ordering="location__code")
    def applies_to(self, obj):
        return obj.location or "All locations (general rule)"


class DiscrepancyInline(BoundedInlineMixin, admin.TabularInline):
    model = Discrepancy
    fields = ["kind", "status", "location", "variant", "expected", "actual", "difference"]
    readonly_fields = fields
    parent_attname = "run_id"
    extra = 0
    show_change_link = True
    verbose_name_plural = f"Discrepancies (the first {MAX_INLINE_ROWS} are shown)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location", "variant")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RunNowMixin:
    """A "run now" button on the changelist that POSTs to ``<changelist>/run/``, where
    ``run_now(request)`` calls the task's service and says what it did."""

    run_now_label = ""

    def _run_now_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_run"

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        if self.has_change_permission(request):
            extra_context["run_now"] = {
                "url": reverse(f"admin:{self._run_now_url_name()}"),
                "label": self.run_now_label,
            }
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path(
                "run/",
                self.admin_site.admin_view(self._run_now_view),
                name=self._run_now_url_name(),
            ),
            *super().get_urls(),
        ]

    def _run_now_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        return self.run_now(request)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(RunNowMixin, ChangedByActionsOnly, admin.ModelAdmin):
    list_display = [
        "id",
        "started_at",
        "trigger",
        "status",
        "counts_processed",
        "lines_compared",
        "discrepancies_found",
        "auto_applied",
        "pending_review",
        "reservations_expired",
        "drift_repaired",
        "availability_updated",
        "finished_at",
    ]
    list_filter = ["status", "trigger"]
    search_fields = ["=trigger"]
    list_select_related = []
    inlines = [DiscrepancyInline]
    change_list_template = "admin/inventory/change_list_run_now.html"
    fields = [
        "status",
        "trigger",
        ("started_at", "finished_at"),
        ("counts_processed", "lines_compared"),
        ("discrepancies_found", "auto_applied", "pending_review"),
        "review",
        ("reservations_expired", "reservations_resourced", "reservations_flagged"),
        ("on_hand_drift_repaired", "reserved_drift_repaired"),
        "availability_updated",
        "error",
    ]
    readonly_fields = [
        "status",
        "trigger",
        "started_at",
        "finished_at",
        "counts_processed",
        "lines_compared",
        "discrepancies_found",
        "auto_applied",
        "pending_review",
        "review",
        "reservations_expired",
        "reservations_resourced",
        "reservations_flagged",
        "on_hand_drift_repaired",
        "reserved_drift_repaired",
        "availability_updated",
        "error",
    ]
    actions = None

    @admin.display(description="Drift repaired (on hand / reserved)")
    def drift_repaired(self, obj):
        return f"{obj.on_hand_drift_repaired} / {obj.reserved_drift_repaired}"

    @admin.display(description="Review")
    def review(self, obj):
        pending = Discrepancy.objects.filter(run=obj, status=DiscrepancyStatus.PENDING).count()
        return format_html(
            '<a href="{}">{} of this run waiting for review</a> · <a href="{}">all of them</a>',
            changelist_url(Discrepancy, run__id__exact=obj.pk, status__exact="pending"),
            plural(pending, "discrepancy", "discrepancies"),
            changelist_url(Discrepancy, run__id__exact=obj.pk),
        )

    run_now_label = "Run reconciliation now"

    def run_now(self, request):
        try:
            run = stock_reconcile(trigger="admin")
        except Exception as exc:  # the run is recorded as failed, with the error
            logger.exception("Reconciliation started in the admin failed")
            self.message_user(request, f"Reconciliation failed: {exc}", messages.ERROR)
            return HttpResponseRedirect(changelist_url(ReconciliationRun))
        self.message_user(request, run_summary(run), messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:inventory_reconciliationrun_change", args=[run.pk])
        )


def run_summary(run: ReconciliationRun) -> str:
    return (
        f"Reconciliation #{run.pk} {run.status}: "
        f"{plural(run.counts_processed, 'count')} processed, "
        f"{plural(run.lines_compared, 'line')} compared, "
        f"{plural(run.discrepancies_found, 'discrepancy', 'discrepancies')} "
        f"({run.auto_applied} applied within tolerance, {run.pending_review} waiting for review); "
        f"{plural(run.reservations_expired, 'expired hold')} released, "
        f"{plural(run.reservations_resourced, 'unit')} of reservations moved, "
        f"{plural(run.reservations_flagged, 'reservation')} flagged; "
        f"drift repaired on {plural(run.on_hand_drift_repaired, 'row')} (on hand) and "
        f"{plural(run.reserved_drift_repaired, 'row')} (reserved); "
        f"{plural(run.availability_updated, 'availability row')} updated."
    )


@admin.register(Discrepancy)
class DiscrepancyAdmin(
    BigTableMixin, ExactSearchMixin, ServiceActionsMixin, ChangedByActionsOnly, admin.ModelAdmin
):
    list_display = [
        "id",
        "run_link",
        "kind",
        "status",
        "location",
        "sku",
        "expected",
        "actual",
        "difference",
        "resolved_by",
        "resolved_at",
        "created_at",
    ]
    list_filter = ["status", "kind", "location"]
    list_select_related = ["location", "variant", "resolved_by"]
    ordering = ["-id"]
    actions = ["approve", "reject"]

    @admin.display(description="Run")
    def run_link(self, obj):
        url = reverse("admin:inventory_reconciliationrun_change", args=[obj.run_id])
        return format_html('<a href="{}">#{}</a>', url, obj.run_id)

    @admin.display(description="SKU")
    def sku(self, obj):
        return obj.variant.sku

    @admin.action(description="Approve (apply to the ledger)", permissions=["change"])
    def approve(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda d: discrepancy_approve(discrepancy=d, actor=request.user),
            done=lambda n: (
                f"Approved {plural(n, 'discrepancy', 'discrepancies')}: the counted "
                "quantities are in the ledger as count corrections."
            ),
            label=lambda d: f"#{d.pk}",
        )

    @admin.action(description="Reject (keep the ledger)", permissions=["change"])
    def reject(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda d: discrepancy_reject(discrepancy=d, actor=request.user),
            done=lambda n: (
                f"Rejected {plural(n, 'discrepancy', 'discrepancies')}: the ledger stays as it was."
            ),
            label=lambda d: f"#{d.pk}",
        )


# --- Transfers --------------------------------------------------------------------------------


class TransferLineInline(LinesOnAddOnly, admin.TabularInline):
    model = TransferLine
    fields = ["variant", "quantity", "shipped_quantity", "received_quantity"]
    readonly_fields = ["shipped_quantity", "received_quantity"]
    autocomplete_fields = ["variant"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("variant", "transfer")


@admin.register(Transfer)
class TransferAdmin(ServiceAdminMixin, ServiceActionsMixin, CreatedByServiceOnly, admin.ModelAdmin):
    form = TransferForm
    list_display = [
        "number",
        "from_location",
        "to_location",
        "status",
        "line_count",
        "units",
        "reference",
        "requested_at",
        "shipped_at",
        "received_at",
    ]
    list_filter = ["status", "from_location", "to_location"]
    search_fields = ["=number", "=reference"]
    list_select_related = ["from_location", "to_location"]
    autocomplete_fields = ["from_location", "to_location"]
    inlines = [TransferLineInline]
    paginator = BoundedCountPaginator
    show_full_result_count = False
    actions = ["ship", "receive", "cancel"]

    def get_queryset(self, request):
        lines = TransferLine.objects.filter(transfer=OuterRef("pk")).order_by().values("transfer")
        return (
            super()
            .get_queryset(request)
            .annotate(
                line_count=Coalesce(Subquery(lines.annotate(n=Count("pk")).values("n")), 0),
                units=Coalesce(Subquery(lines.annotate(n=Sum("quantity")).values("n")), 0),
            )
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["from_location", "to_location", "reference", "note", "expected_at"]
        return [
            "number",
            "status",
            ("from_location", "to_location"),
            "reference",
            "note",
            "expected_at",
            ("requested_at", "shipped_at", "received_at"),
            "requested_by",
        ]

    @admin.display(description="Lines")
    def line_count(self, obj):
        return obj.line_count

    @admin.display(description="Units")
    def units(self, obj):
        return obj.units

    def save_model(self, request, obj, form, change):
        pass  # created with its lines by transfer_request, in save_related

    def save_related(self, request, form, formsets, change):
        lines = []
        for formset in formsets:
            lines += [
                {"variant": f.cleaned_data["variant"], "quantity": f.cleaned_data["quantity"]}
                for f in formset.forms
                if getattr(f, "cleaned_data", None) and not f.cleaned_data.get("DELETE")
            ]
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        data = form.cleaned_data
        transfer = transfer_request(
            from_location=data["from_location"],
            to_location=data["to_location"],
            lines=lines,
            reference=data.get("reference", ""),
            note=data.get("note", ""),
            expected_at=data.get("expected_at"),
            actor=request.user,
        )
        form.instance.pk = transfer.pk
        form.instance.refresh_from_db()
        self.message_user(
            request,
            f"Transfer {transfer.number} requested: {plural(len(lines), 'line')}, held at "
            f"{transfer.from_location.code} until it ships.",
            messages.SUCCESS,
        )

    def _transition(self, request, queryset, service, verb):
        self.run_each(
            request,
            queryset,
            lambda transfer: service(transfer=transfer, actor=request.user),
            done=lambda n: f"{verb} {plural(n, 'transfer')}.",
            label=lambda transfer: transfer.number,
        )

    @admin.action(description="Ship (everything requested)", permissions=["change"])
    def ship(self, request, queryset):
        self._transition(request, queryset, transfer_ship, "Shipped")

    @admin.action(description="Receive (everything shipped)", permissions=["change"])
    def receive(self, request, queryset):
        self._transition(request, queryset, transfer_receive, "Received")

    @admin.action(description="Cancel (not shipped yet)", permissions=["change"])
    def cancel(self, request, queryset):
        self._transition(request, queryset, transfer_cancel, "Cancelled")


# --- Reorder rules and suggestions ------------------------------------------------------------


@admin.register(ReorderRule)
class ReorderRuleAdmin(ExactSearchMixin, admin.ModelAdmin):
    list_display = [
        "location",
        "sku",
        "min_quantity",
        "max_quantity",
        "lead_time_days",
        "pack_size",
        "is_active",
    ]
    list_editable = ["min_quantity", "max_quantity", "lead_time_days", "pack_size", "is_active"]
    list_filter = ["location", "is_active"]
    list_select_related = ["location", "variant"]
    autocomplete_fields = ["location", "variant"]
    ordering = ["location_id", "variant_id"]  # the unique index (location, variant)
    paginator = BoundedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    @admin.display(description="SKU")
    def sku(self, obj):
        return obj.variant.sku


@admin.register(ReplenishmentSuggestion)
class ReplenishmentSuggestionAdmin(
    RunNowMixin,
    BigTableMixin,
    ExactSearchMixin,
    ServiceActionsMixin,
    ChangedByActionsOnly,
    admin.ModelAdmin,
):
    list_display = [
        "id",
        "location",
        "sku",
        "kind",
        "from_location",
        "quantity",
        "position",
        "reorder_point",
        "daily_velocity",
        "status",
        "transfer_link",
        "updated_at",
    ]
    list_filter = ["status", "kind", "location"]
    list_select_related = ["location", "from_location", "variant", "transfer"]
    ordering = ["-id"]
    change_list_template = "admin/inventory/change_list_run_now.html"
    actions = ["create_transfer", "mark_ordered", "dismiss"]

    @admin.display(description="SKU")
    def sku(self, obj):
        return obj.variant.sku

    @admin.display(description="Transfer")
    def transfer_link(self, obj):
        if obj.transfer is None:
            return "-"
        url = reverse("admin:inventory_transfer_change", args=[obj.transfer_id])
        return format_html('<a href="{}">{}</a>', url, obj.transfer.number)

    def _decide(self, request, queryset, service, done):
        self.run_each(
            request,
            queryset,
            lambda s: service(suggestion=s, actor=request.user),
            done=done,
            label=lambda s: f"#{s.pk} ({s.variant.sku} at {s.location.code})",
        )

    @admin.action(description="Create the transfer", permissions=["change"])
    def create_transfer(self, request, queryset):
        self._decide(
            request,
            queryset,
            suggestion_create_transfer,
            lambda n: f"Created {plural(n, 'transfer')} (stock held at the source).",
        )

    @admin.action(description="Mark purchase ordered", permissions=["change"])
    def mark_ordered(self, request, queryset):
        self._decide(
            request,
            queryset,
            suggestion_mark_ordered,
            lambda n: f"Marked {plural(n, 'suggestion')} as purchase ordered.",
        )

    @admin.action(description="Dismiss", permissions=["change"])
    def dismiss(self, request, queryset):
        self._decide(
            request, queryset, suggestion_dismiss, lambda n: f"Dismissed {plural(n, 'suggestion')}."
        )

    run_now_label = "Run reorder suggestions now"

    def run_now(self, request):
        result = reorder_suggest()
        self.message_user(
            request,
            f"Reorder suggestions: {plural(result.rules, 'rule')} checked, "
            f"{result.proposed} proposed, {result.updated} updated, "
            f"{result.withdrawn} withdrawn.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(changelist_url(ReplenishmentSuggestion))
