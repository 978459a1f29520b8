"""The orders admin for operations and customer service staff.

Orders, carts and returns are business records written by ``orders.services`` (checkout, the
API, the store pages, the tills): here they are read, never added, edited or deleted. What
staff may change, they change through one service call each: the list's actions (cancel, mark
ready for pickup) and the buttons of an order's page (cancel with a reason, mark ready, ship
with a carrier and a tracking number). A refused call shows the service's message and changes
nothing; the others still go through, each in its own transaction.

The order and cart lists are big tables: they page without counting, compute no facet counts,
sort only by id (the primary key index; ids follow the time of placing) and search by exact
values an index serves: the order number, the channel's own reference, and the customer's
identifiers (normalised like the stored ones, as in the customers admin).

Staff work in stores through ``StaffAssignment`` rows, edited on their own list and on each
user's page (the user admin is Django's, with the stores inline).
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from customers.selectors import customers_matching
from inventory.models import Location, LocationKind
from omni.admin_utils import (
    BigTableMixin,
    BoundedCountPaginator,
    ServiceActionsMixin,
    error_text,
    plural,
)
from omni.exceptions import OmniError
from omni.models import Channel
from orders.models import (
    Cart,
    CartLine,
    Fulfilment,
    Order,
    OrderLine,
    OrderStatus,
    OrderStatusChange,
    Return,
    ReturnLine,
    StaffAssignment,
)
from orders.services import allowed, order_cancel, order_mark_ready, order_ship

# A customer search matching more customers than this (a shared family email) shows the
# orders of the first ones only.
MAX_SEARCH_CUSTOMERS = 100


def change_url(obj) -> str:
    return reverse(f"admin:orders_{obj._meta.model_name}_change", args=[obj.pk])


def source_of(request) -> str:
    return f"user:{request.user.pk}"


# --- Shared behaviour -------------------------------------------------------------------------


class ReadOnlyInline(admin.TabularInline):
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class WrittenByServicesOnly:
    """Records the services write: no add form, a read-only page, no delete. The change
    permission is what lets staff run the actions and the page's buttons."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False


class SalesChannelFilter(admin.RelatedFieldListFilter):
    """Sales channels only (orders and carts never belong to a messaging channel)."""

    def field_choices(self, field, request, model_admin):
        return [(c.pk, str(c)) for c in Channel.objects.sales().order_by("code")]


class StoreFilter(admin.RelatedFieldListFilter):
    """Stores only (a warehouse never is an order's store)."""

    def field_choices(self, field, request, model_admin):
        stores = Location.objects.filter(kind=LocationKind.STORE).order_by("code")
        return [
            (pk, f"{code} · {name}") for pk, code, name in stores.values_list("pk", "code", "name")
        ]


def customer_ids_matching(term: str) -> list[int]:
    """Customers whose identifiers match ``term`` once normalised (an email in any case, a
    phone in any format, a loyalty card...): index lookups on identities."""
    return list(customers_matching(term).values_list("pk", flat=True)[:MAX_SEARCH_CUSTOMERS])


class OrderActionForm(ActionForm):
    """The order list's action bar, with the reason given to a cancellation."""

    reason = forms.CharField(
        required=False,
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "reason (cancel)", "size": 28}),
    )


class CancelForm(forms.Form):
    reason = forms.CharField(required=False, max_length=300)


class ShipForm(forms.Form):
    carrier = forms.CharField(required=False, max_length=60)
    tracking_number = forms.CharField(required=False, max_length=100)


# --- Orders -----------------------------------------------------------------------------------


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = [
        "line_number",
        "sku",
        "title",
        "quantity",
        "unit_price",
        "line_total",
        "returned_quantity",
        "transfer",
        "transfer_quantity",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("transfer")


class StatusHistoryInline(ReadOnlyInline):
    model = OrderStatusChange
    fields = ["at", "from_status", "to_status", "source", "actor", "note"]
    readonly_fields = fields
    verbose_name_plural = "Status history (oldest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor").order_by("at", "pk")


class FulfilmentInline(ReadOnlyInline):
    model = Fulfilment
    fields = ["created_at", "method", "location", "units", "carrier", "tracking_number", "actor"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location", "actor")


class ReturnInline(ReadOnlyInline):
    model = Return
    fields = ["number", "created_at", "location", "refund_amount", "reason", "actor"]
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location", "actor")


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "needs_attention"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(needs_attention=self.value() == "yes")
        return queryset


ORDER_FIELDSETS = [
    (
        "Order",
        {
            "fields": [
                ("number", "status"),
                ("channel", "external_reference"),
                ("fulfilment_method", "store"),
                "customer_link",
                ("placed_at", "expected_ready_at", "ready_at", "closed_at"),
                ("needs_attention", "attention_reason"),
                ("source", "created_by", "updated_at"),
            ]
        },
    ),
    ("Amounts", {"fields": [("currency", "subtotal", "total", "refunded_total")]}),
    (
        "Contact",
        {
            "fields": [
                "contact_name",
                ("contact_email", "contact_phone"),
                "shipping_address",
                "note",
            ]
        },
    ),
]


@admin.register(Order)
class OrderAdmin(BigTableMixin, ServiceActionsMixin, WrittenByServicesOnly, admin.ModelAdmin):
    list_display = [
        "number",
        "channel",
        "customer_link",
        "status",
        "fulfilment_method",
        "store",
        "total_amount",
        "placed_at",
        "needs_attention",
    ]
    list_filter = [
        "status",
        "fulfilment_method",
        ("channel", SalesChannelFilter),
        ("store", StoreFilter),
        NeedsAttentionFilter,
    ]
    search_fields = ["=number"]  # shows the search box; the search itself is below
    search_help_text = (
        "An order number, the channel's own reference (marketplace order, POS receipt), or the "
        "customer's email, phone or other identifier."
    )
    list_select_related = ["channel", "customer", "store"]
    ordering = ["-id"]  # the primary key index; ids follow the time of placing
    fieldsets = ORDER_FIELDSETS
    readonly_fields = [
        "number",
        "status",
        "channel",
        "external_reference",
        "fulfilment_method",
        "store",
        "customer_link",
        "placed_at",
        "expected_ready_at",
        "ready_at",
        "closed_at",
        "needs_attention",
        "attention_reason",
        "source",
        "created_by",
        "updated_at",
        "currency",
        "subtotal",
        "total",
        "refunded_total",
        "contact_name",
        "contact_email",
        "contact_phone",
        "shipping_address",
        "note",
    ]
    inlines = [OrderLineInline, StatusHistoryInline, FulfilmentInline, ReturnInline]
    action_form = OrderActionForm
    actions = ["cancel", "mark_ready"]
    change_form_template = "admin/orders/order/change_form.html"

    def get_search_results(self, request, queryset, search_term):
        """The number (its unique index), the channel's reference (the unique index on channel
        and reference, over the sales channels) or the customer (her identifiers, normalised,
        then the orders index on customer)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        sales = list(Channel.objects.sales().values_list("pk", flat=True))
        condition = Q(number=term.upper()) | Q(channel_id__in=sales, external_reference=term)
        customer_ids = customer_ids_matching(term)
        if customer_ids:
            condition |= Q(customer_id__in=customer_ids)
        return queryset.filter(condition), False

    @admin.display(description="Customer")
    def customer_link(self, obj):
        if obj.customer_id is None:
            return obj.contact_name or "-"
        url = reverse("admin:customers_customer_change", args=[obj.customer_id])
        return format_html('<a href="{}">{}</a>', url, obj.customer)

    @admin.display(description="Total")
    def total_amount(self, obj):
        return f"{obj.total} {obj.currency}"

    # Actions: one service call per order, each its own transaction.

    @admin.action(description="Cancel (reason in the action bar)", permissions=["change"])
    def cancel(self, request, queryset):
        reason = (request.POST.get("reason") or "").strip() or "Cancelled in the admin."
        self.run_each(
            request,
            queryset.select_related("channel", "store"),
            lambda order: order_cancel(
                order=order, source=source_of(request), actor=request.user, reason=reason
            ),
            done=lambda n: f"Cancelled {plural(n, 'order')}: the stock held for them is released.",
            label=lambda order: order.number,
        )

    @admin.action(description="Mark ready for pickup", permissions=["change"])
    def mark_ready(self, request, queryset):
        self.run_each(
            request,
            queryset.select_related("channel", "store"),
            lambda order: order_mark_ready(
                order=order, source=source_of(request), actor=request.user
            ),
            done=lambda n: f"Marked {plural(n, 'order')} ready for pickup: the customers are told.",
            label=lambda order: order.number,
        )

    # The buttons of an order's page: cancel (with a reason), mark ready, ship.

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_change_permission(request):
            context["order_tools"] = {
                "mark_ready_url": self._tool_url("mark_ready", obj)
                if allowed(obj, OrderStatus.READY)
                else None,
                "ship_url": self._tool_url("ship", obj)
                if allowed(obj, OrderStatus.SHIPPED)
                else None,
                "cancel_url": self._tool_url("cancel", obj)
                if allowed(obj, OrderStatus.CANCELLED)
                else None,
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    @staticmethod
    def _tool_url(name, order) -> str:
        return reverse(f"admin:orders_order_{name}", args=[order.pk])

    def get_urls(self):
        def view(function, name, suffix):
            return path(
                f"<path:object_id>/{suffix}/",
                self.admin_site.admin_view(function),
                name=f"orders_order_{name}",
            )

        return [
            view(self.mark_ready_view, "mark_ready", "mark-ready"),
            view(self.ship_view, "ship", "ship"),
            view(self.cancel_view, "cancel", "cancel"),
            *super().get_urls(),
        ]

    def _tool(self, request, object_id, form_class, call, done):
        """POST only, with the change permission: validate the form, call the service, say
        what happened on the order's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        order = self.get_object(request, unquote(object_id))
        if order is None:
            raise Http404("No such order.")
        form = form_class(request.POST)
        if not form.is_valid():
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            self.message_user(request, f"Nothing changed. {problems}", messages.ERROR)
            return HttpResponseRedirect(change_url(order))
        try:
            call(order, form.cleaned_data)
        except OmniError as exc:
            self.message_user(request, f"Nothing changed. {error_text(exc)}", messages.ERROR)
        else:
            self.message_user(request, done(order), messages.SUCCESS)
        return HttpResponseRedirect(change_url(order))

    def mark_ready_view(self, request, object_id):
        return self._tool(
            request,
            object_id,
            forms.Form,
            lambda order, data: order_mark_ready(
                order=order, source=source_of(request), actor=request.user
            ),
            lambda order: f"Order {order.number} is ready for pickup; the customer is told.",
        )

    def ship_view(self, request, object_id):
        return self._tool(
            request,
            object_id,
            ShipForm,
            lambda order, data: order_ship(
                order=order,
                source=source_of(request),
                actor=request.user,
                carrier=data["carrier"],
                tracking_number=data["tracking_number"],
            ),
            lambda order: f"Order {order.number} shipped.",
        )

    def cancel_view(self, request, object_id):
        return self._tool(
            request,
            object_id,
            CancelForm,
            lambda order, data: order_cancel(
                order=order,
                source=source_of(request),
                actor=request.user,
                reason=data["reason"] or "Cancelled in the admin.",
            ),
            lambda order: f"Order {order.number} cancelled; the stock held for it is released.",
        )


# --- Carts ------------------------------------------------------------------------------------


class CartLineInline(ReadOnlyInline):
    model = CartLine
    fields = ["sku", "variant", "quantity", "unit_price", "added_at", "updated_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("variant")

    @admin.display(description="SKU")
    def sku(self, obj):
        return obj.variant.sku


@admin.register(Cart)
class CartAdmin(BigTableMixin, WrittenByServicesOnly, admin.ModelAdmin):
    list_display = [
        "token",
        "channel",
        "customer_link",
        "status",
        "line_count",
        "last_activity_at",
    ]
    list_filter = ["status", ("channel", SalesChannelFilter)]
    search_fields = ["=token"]  # shows the search box; the search itself is below
    search_help_text = "The cart's token, or the customer's email, phone or other identifier."
    list_select_related = ["channel", "customer"]
    ordering = ["-id"]
    fields = [
        ("token", "status"),
        ("channel", "currency"),
        "customer_link",
        "external_reference",
        ("created_at", "last_activity_at", "closed_at"),
        "source",
        "order_link",
    ]
    readonly_fields = [
        "token",
        "status",
        "channel",
        "currency",
        "customer_link",
        "external_reference",
        "created_at",
        "last_activity_at",
        "closed_at",
        "source",
        "order_link",
    ]
    inlines = [CartLineInline]
    actions = None

    def get_queryset(self, request):
        lines = (
            CartLine.objects.filter(cart=OuterRef("pk"))
            .order_by()
            .values("cart")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(line_count=Coalesce(Subquery(lines), 0))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(token=term.lower())
        customer_ids = customer_ids_matching(term)
        if customer_ids:
            condition |= Q(customer_id__in=customer_ids)
        return queryset.filter(condition), False

    @admin.display(description="Lines")
    def line_count(self, obj):
        return obj.line_count

    @admin.display(description="Customer")
    def customer_link(self, obj):
        if obj.customer_id is None:
            return "anonymous"
        url = reverse("admin:customers_customer_change", args=[obj.customer_id])
        return format_html('<a href="{}">{}</a>', url, obj.customer)

    @admin.display(description="Order")
    def order_link(self, obj):
        order = Order.objects.filter(cart=obj).only("pk", "number").first()
        if order is None:
            return "-"
        return format_html('<a href="{}">{}</a>', change_url(order), order.number)


# --- Returns ----------------------------------------------------------------------------------


class ReturnLineInline(ReadOnlyInline):
    model = ReturnLine
    fields = ["line", "quantity", "disposition"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order_line")

    @admin.display(description="Order line")
    def line(self, obj):
        line = obj.order_line
        return f"#{line.line_number} {line.sku} · {line.title}"


@admin.register(Return)
class ReturnAdmin(WrittenByServicesOnly, admin.ModelAdmin):
    """Returns are taken at the store counter or through the API (``return_create``)."""

    list_display = ["number", "order_link", "location", "refund", "created_at"]
    list_filter = ["location"]
    search_fields = ["=number", "=order__number"]
    search_help_text = "A return number or an order number."
    list_select_related = ["order", "location"]
    ordering = ["-id"]
    paginator = BoundedCountPaginator
    show_full_result_count = False
    fields = [
        ("number", "order_link"),
        "location",
        ("refund_amount", "created_at"),
        "reason",
        ("source", "actor"),
    ]
    readonly_fields = [
        "number",
        "order_link",
        "location",
        "refund_amount",
        "created_at",
        "reason",
        "source",
        "actor",
    ]
    inlines = [ReturnLineInline]
    actions = None

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().upper()
        if not term:
            return queryset, False
        return queryset.filter(Q(number=term) | Q(order__number=term)), False

    @admin.display(description="Order")
    def order_link(self, obj):
        return format_html('<a href="{}">{}</a>', change_url(obj.order), obj.order.number)

    @admin.display(description="Refund")
    def refund(self, obj):
        return f"{obj.refund_amount} {obj.order.currency}"


# --- Store staff ------------------------------------------------------------------------------


@admin.register(StaffAssignment)
class StaffAssignmentAdmin(admin.ModelAdmin):
    """Who works in which store: the store pages show a user the stores she is assigned to,
    and nothing of the others."""

    list_display = ["user", "location", "created_at"]
    list_filter = [("location", StoreFilter)]
    search_fields = ["user__username", "user__email", "location__code", "location__name"]
    list_select_related = ["user", "location"]
    autocomplete_fields = ["user", "location"]
    fields = ["user", "location", "created_at"]
    readonly_fields = ["created_at"]


class StaffAssignmentInline(admin.TabularInline):
    model = StaffAssignment
    fk_name = "user"
    extra = 0
    fields = ["location", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["location"]
    verbose_name = "store"
    verbose_name_plural = "Stores this user works in (store pages)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location")


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class StoreStaffUserAdmin(UserAdmin):
    """Django's user admin, with the stores the user works in."""

    inlines = [StaffAssignmentInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []
