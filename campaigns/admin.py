"""The campaigns admin: messaging rules, templates, campaigns with their steps, and the records
the tasks write (enrolments, the message outbox, attributions, subscriptions, signage scans),
plus the dashboards and the retargeting audience export.

- Messaging rules and templates are edited here. A template is refused while a field has
  problems (``campaigns.rendering.template_problems``: syntax errors, unknown variables),
  each shown on its field; its page shows the SMS length and segments and links to the
  preview.
- A campaign's status changes only through the list's actions (``campaign_activate``,
  ``campaign_pause``); activation refuses a campaign that could not run, and saving an active
  campaign runs the same checks (a refused save changes nothing).
- Enrolments, messages, attributions and scans are written by the tasks: read-only, big
  tables that page without counting.
- The dashboards (channels, campaigns) read the hourly rollups; "Refresh now" recomputes them.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from campaigns.forms import AudienceExportForm, CampaignStepForm, CampaignStepFormSet, TemplateForm
from campaigns.models import (
    Attribution,
    AttributionWindow,
    BackInStockSubscription,
    Campaign,
    CampaignStatus,
    CampaignStep,
    Enrolment,
    Message,
    MessagingRule,
    SignageScan,
    SuppressionReason,
    Template,
)
from campaigns.services.campaigns import (
    campaign_activate,
    campaign_check,
    campaign_pause,
    holdout_problem,
)
from customers.models import Customer
from customers.selectors import customers_matching
from omni.admin_utils import (
    BigTableMixin,
    ReadOnlyAdmin,
    ServiceActionsMixin,
    ServiceAdminMixin,
    error_text,
    plural,
)
from omni.exceptions import OmniError

# A customer search matching more customers than this shows the rows of the first ones only.
MAX_SEARCH_CUSTOMERS = 100


def flat(fields) -> list[str]:
    """The field names of a ``fields`` list whose rows may be tuples."""
    return [name for row in fields for name in (row if isinstance(row, tuple) else (row,))]


def customer_link(customer_id, label=None):
    if customer_id is None:
        return "-"
    url = reverse("admin:customers_customer_change", args=[customer_id])
    return format_html('<a href="{}">{}</a>', url, label or f"#{customer_id}")


def is_id(text: str) -> bool:
    """Whether ``text`` can be a row id: ASCII digits (``"²".isdigit()`` and ``"٣".isdigit()``
    are True, but ``int()`` refuses them) that fit a bigint."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def customer_condition(term: str, field: str = "customer_id") -> Q | None:
    """Rows of the customer a search term names: ``#123`` or ``123`` (her id), else her
    email, phone or other identifier, normalised."""
    digits = term.lstrip("#")
    if is_id(digits):
        return Q(**{field: int(digits)})
    ids = list(customers_matching(term).values_list("pk", flat=True)[:MAX_SEARCH_CUSTOMERS])
    return Q(**{f"{field}__in": ids}) if ids else None


# --- Messaging rules --------------------------------------------------------------------------


@admin.register(MessagingRule)
class MessagingRuleAdmin(admin.ModelAdmin):
    """The rules of each messaging channel: consent, frequency cap, quiet hours, fallback and
    what an order must follow to be attributed. Validated by the model (``clean``)."""

    list_display = [
        "channel",
        "is_enabled",
        "consent_required",
        "cap",
        "over_cap",
        "quiet_hours",
        "fallback_channel",
        "attribute_on",
        "updated_at",
    ]
    list_filter = ["is_enabled", "consent_required", "over_cap", "attribute_on"]
    search_fields = ["channel__code", "channel__name"]
    list_select_related = ["channel", "fallback_channel"]
    autocomplete_fields = ["channel", "fallback_channel"]
    fieldsets = [
        (None, {"fields": ["channel", "is_enabled", "consent_required"]}),
        ("Frequency cap", {"fields": [("frequency_cap", "cap_period_hours"), "over_cap"]}),
        ("Quiet hours", {"fields": [("quiet_hours_start", "quiet_hours_end")]}),
        ("Fallback and attribution", {"fields": ["fallback_channel", "attribute_on"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        # A rule belongs to its channel for good; another channel gets its own rule.
        return ["channel"] if obj else []

    def has_delete_permission(self, request, obj=None):
        # Without a rule the defaults would apply silently: turn a channel off instead.
        return False

    @admin.display(description="Cap")
    def cap(self, obj):
        if not obj.frequency_cap:
            return "no cap"
        return f"{obj.frequency_cap} per {obj.cap_period_hours} h"

    @admin.display(description="Quiet hours")
    def quiet_hours(self, obj):
        if obj.quiet_hours_start is None:
            return "none"
        return f"{obj.quiet_hours_start:%H:%M}–{obj.quiet_hours_end:%H:%M}"


# --- Templates --------------------------------------------------------------------------------


class RenditionFilter(admin.SimpleListFilter):
    title = "rendition"
    parameter_name = "rendition"
    CONDITIONS = {
        "email": Q(~Q(email_subject=""), ~Q(email_html="") | ~Q(email_text="")),
        "sms": ~Q(sms_text=""),
        "push": ~Q(push_body=""),
        "social_dm": ~Q(social_text=""),
    }

    def lookups(self, request, model_admin):
        return [("email", "Email"), ("sms", "SMS"), ("push", "Push"), ("social_dm", "Social")]

    def queryset(self, request, queryset):
        condition = self.CONDITIONS.get(self.value())
        return queryset.filter(condition) if condition is not None else queryset


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = ["name", "description", "renditions", "step_count", "updated_at", "preview"]
    list_filter = [RenditionFilter]
    search_fields = ["name", "description"]
    list_select_related = []
    readonly_fields = ["preview", "variables", "sms_length", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "preview"]}),
        ("Email", {"fields": ["email_subject", "email_html", "email_text"]}),
        ("SMS", {"fields": ["sms_text", "sms_length"]}),
        ("Push notification", {"fields": ["push_title", "push_body"]}),
        ("Social message", {"fields": ["social_text"]}),
        (
            "What templates may use",
            {"fields": ["variables"], "classes": ["collapse"]},
        ),
        ("History", {"fields": [("created_at", "updated_at")]}),
    ]

    def get_queryset(self, request):
        steps = (
            CampaignStep.objects.filter(template=OuterRef("pk"))
            .order_by()
            .values("template")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(step_count=Coalesce(Subquery(steps), 0))

    @admin.display(description="Used by steps", ordering="step_count")
    def step_count(self, obj):
        return getattr(obj, "step_count", None) or 0

    @admin.display(description="Renditions")
    def renditions(self, obj):
        names = {"email": "email", "sms": "SMS", "push": "push", "social_dm": "social"}
        present = [label for kind, label in names.items() if obj.has_rendition(kind)]
        return ", ".join(present) or "none"

    @admin.display(description="Preview")
    def preview(self, obj):
        if not obj or not obj.pk:
            return "Save the template to preview it."
        url = reverse("admin:campaigns_template_preview", args=[obj.pk])
        return format_html('<a href="{}">Preview every rendition</a>', url)

    @admin.display(description="SMS length")
    def sms_length(self, obj):
        if not obj or not obj.sms_text:
            return "No SMS text."
        from campaigns.rendering import sms_info

        encoding, characters, segments = sms_info(obj.sms_text)
        return (
            f"{plural(characters, 'character')} in {encoding}, {plural(segments, 'segment')} "
            "as written (the preview shows the length for a customer, with her data)."
        )

    @admin.display(description="Variables")
    def variables(self, obj):
        from campaigns.rendering import context_paths

        return format_html(
            "<p>The variables a template may use (see docs/campaigns.md):</p><ul>{}</ul>",
            format_html_join("", "<li><code>{}</code></li>", ((p,) for p in context_paths())),
        )

    def get_urls(self):
        return [
            path(
                "<int:template_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="campaigns_template_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request, template_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        from campaigns.admin_preview import template_preview_view

        return template_preview_view(request, template_id)


# --- Campaigns --------------------------------------------------------------------------------


class CampaignStepInline(admin.TabularInline):
    model = CampaignStep
    form = CampaignStepForm
    formset = CampaignStepFormSet
    extra = 0
    fields = ["position", "delay_minutes", "channels", "template"]
    autocomplete_fields = ["template"]
    ordering = ["position"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("template")

    def has_delete_permission(self, request, obj=None):
        # Its messages and attributions hang on the step: a campaign that enrolled someone
        # keeps its steps (edit them, add more, or pause the campaign).
        return super().has_delete_permission(request, obj) and not has_history(obj)


def has_history(campaign) -> bool:
    """Whether ``campaign`` enrolled anyone: its enrolments, messages, attributions and
    rollups are the record of what it did, which deleting it or a step would erase."""
    return campaign is not None and Enrolment.objects.filter(campaign=campaign).exists()


class AttributionWindowInline(admin.TabularInline):
    model = AttributionWindow
    extra = 0
    fields = ["channel", "hours"]
    autocomplete_fields = ["channel"]
    verbose_name = "attribution window on a channel"
    verbose_name_plural = "Attribution windows per channel (else the campaign's window)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel")


CAMPAIGN_FIELDSETS = [
    (None, {"fields": ["name", "description", ("trigger", "purpose"), "status"]}),
    ("Audience", {"fields": ["segment", "sales_channel", "holdout_percent"]}),
    (
        "Trigger settings",
        {
            "fields": [
                ("idle_minutes", "lookback_hours"),
                "winback_days",
                "min_quantity",
                "broadcast_at",
            ],
            "description": "Each applies to the triggers its help names.",
        },
    ),
    (
        "Exit conditions, re-entry and attribution",
        {
            "fields": [
                ("exit_on_purchase", "exit_on_cart_closed", "exit_on_sold_out"),
                "reentry_cooldown_days",
                "attribution_window_hours",
            ]
        },
    ),
    ("Period", {"fields": [("starts_at", "ends_at"), ("created_at", "updated_at")]}),
]


class CampaignForm(forms.ModelForm):
    """Refuses a holdout on a transactional campaign on its field, whatever the status (an
    active campaign is checked again whole when saved)."""

    def clean(self):
        data = super().clean()
        problem = holdout_problem(
            purpose=data.get("purpose"), holdout_percent=data.get("holdout_percent")
        )
        if problem and "holdout_percent" not in self.errors:
            self.add_error("holdout_percent", problem)
        return data


@admin.register(Campaign)
class CampaignAdmin(ServiceActionsMixin, ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["name", "trigger", "purpose", "status", "segment", "enrolled", "period"]
    list_filter = ["status", "trigger", "purpose"]
    search_fields = ["name", "description"]
    list_select_related = ["segment"]
    autocomplete_fields = ["segment", "sales_channel"]
    form = CampaignForm
    readonly_fields = ["status", "created_at", "updated_at"]
    fieldsets = CAMPAIGN_FIELDSETS
    inlines = [CampaignStepInline, AttributionWindowInline]
    actions = ["activate", "pause"]
    change_list_template = "admin/campaigns/campaign/change_list.html"

    def has_delete_permission(self, request, obj=None):
        # Only a campaign that never enrolled anyone may go (pause one that did).
        return super().has_delete_permission(request, obj) and not has_history(obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each checked for its history
        return actions

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is None or match.url_name != "campaigns_campaign_changelist":
            return queryset  # a campaign's own page does not count its enrolments
        # One count per listed campaign, over the (campaign, enrolled_at) index.
        enrolled = (
            Enrolment.objects.filter(campaign=OuterRef("pk"))
            .order_by()
            .values("campaign")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return queryset.annotate(enrolled_count=Coalesce(Subquery(enrolled), 0))

    @admin.display(description="Enrolled", ordering="enrolled_count")
    def enrolled(self, obj):
        count = getattr(obj, "enrolled_count", 0)
        url = reverse("admin:campaigns_enrolment_changelist") + f"?campaign__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, f"{count:,}")

    @admin.display(description="Period")
    def period(self, obj):
        if obj.starts_at is None and obj.ends_at is None:
            return "always"
        start = f"{timezone.localtime(obj.starts_at):%Y-%m-%d}" if obj.starts_at else "…"
        end = f"{timezone.localtime(obj.ends_at):%Y-%m-%d}" if obj.ends_at else "…"
        return f"{start} – {end}"

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        campaign = form.instance
        if campaign.status == CampaignStatus.ACTIVE:
            # A running campaign stays runnable: the same checks as activation, and the whole
            # save is refused (ServiceAdminMixin) when it fails them.
            campaign_check(campaign)

    # Actions: one service call per campaign, each its own transaction.

    @admin.action(description="Activate (checks the steps and templates)", permissions=["change"])
    def activate(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda campaign: campaign_activate(campaign=campaign),
            done=lambda n: f"Activated {plural(n, 'campaign')}: they enrol and send from now on.",
            label=lambda campaign: campaign.name,
        )

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda campaign: campaign_pause(campaign=campaign),
            done=lambda n: (
                f"Paused {plural(n, 'campaign')}: nothing is enrolled or sent until "
                "they are activated again."
            ),
            label=lambda campaign: campaign.name,
        )

    # Pages of their own: the dashboards and the retargeting audience export.

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "campaign_tools": self._tools(request)}
        return super().changelist_view(request, extra_context)

    def _tools(self, request) -> list[tuple[str, str]]:
        tools = [
            (reverse("admin:campaigns_dashboard_channels"), "Channels dashboard"),
            (reverse("admin:campaigns_dashboard_campaigns"), "Campaigns dashboard"),
        ]
        if self.has_export_permission(request):
            tools.append(
                (reverse("admin:campaigns_audience_export"), "Retargeting audience export")
            )
        return tools

    def get_urls(self):
        def view(function, route, name):
            return path(route, self.admin_site.admin_view(function), name=f"campaigns_{name}")

        return [
            view(self.channels_dashboard_view, "dashboards/channels/", "dashboard_channels"),
            view(self.campaigns_dashboard_view, "dashboards/campaigns/", "dashboard_campaigns"),
            view(self.refresh_view, "dashboards/refresh/", "dashboard_refresh"),
            view(self.audience_export_view, "audience-export/", "audience_export"),
            *super().get_urls(),
        ]

    def _page(self, request, template, title, **context):
        return TemplateResponse(
            request,
            f"admin/campaigns/{template}",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "opts": self.opts,
                "may_refresh": self.has_change_permission(request),
                "refresh_url": reverse("admin:campaigns_dashboard_refresh"),
                "tools": self._tools(request),
                **context,
            },
        )

    def channels_dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        from campaigns.dashboard import channel_dashboard

        return self._page(
            request,
            "dashboard_channels.html",
            "Channels dashboard",
            dashboard=channel_dashboard(),
            back=request.path,
        )

    def campaigns_dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        from campaigns.dashboard import campaign_dashboard

        return self._page(
            request,
            "dashboard_campaigns.html",
            "Campaigns dashboard",
            dashboard=campaign_dashboard(),
            back=request.path,
        )

    def refresh_view(self, request):
        """POST: attribute recent orders and refresh the rollups now (what the hourly task
        does), then back to the dashboard, with what was done."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        from campaigns.services.rollups import campaign_figures_refresh

        result = campaign_figures_refresh()
        self.message_user(
            request,
            f"Attributed {plural(result['attributed'], 'new order')}. "
            f"Refreshed {plural(result['days'], 'day')} "
            f"({result['first_day']} to {result['last_day']}): "
            f"{plural(result['channel_rows'], 'channel row')}, "
            f"{plural(result['campaign_rows'], 'campaign row')}; "
            f"{plural(result['customers'], 'customer')}, "
            f"{result['multichannel_customers']:,} on two or more sales channels.",
            messages.SUCCESS,
        )
        back = request.POST.get("next") or ""
        allowed = {
            reverse("admin:campaigns_dashboard_channels"),
            reverse("admin:campaigns_dashboard_campaigns"),
        }
        return HttpResponseRedirect(
            back if back in allowed else reverse("admin:campaigns_dashboard_channels")
        )

    def has_export_permission(self, request) -> bool:
        """The audience export hands out (hashed) personal data: it takes the permission to
        view customers as well as campaigns."""
        return self.has_view_permission(request) and request.user.has_perm(
            f"{Customer._meta.app_label}.view_{Customer._meta.model_name}"
        )

    def audience_export_view(self, request):
        """Choose an audience (a segment, or customers with an abandoned cart) and download
        its hashed emails and phones as CSV (``campaigns.services.audiences.audience_csv``)."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        form = AudienceExportForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            from campaigns.services.audiences import audience_csv

            data = form.cleaned_data
            by_segment = data["audience"] == AudienceExportForm.SEGMENT
            try:
                lines = audience_csv(
                    segment=data["segment"] if by_segment else None,
                    abandoned_carts=not by_segment,
                    min_idle_minutes=data["min_idle_minutes"] if not by_segment else 60,
                )
            except OmniError as exc:
                self.message_user(request, f"Nothing exported. {error_text(exc)}", messages.ERROR)
            else:
                name = f"segment-{data['segment'].pk}" if by_segment else "abandoned-carts"
                stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
                response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
                response["Content-Disposition"] = (
                    f'attachment; filename="audience-{name}-{stamp}.csv"'
                )
                return response
        return self._page(request, "audience_export.html", "Retargeting audience export", form=form)


# --- Records the tasks write ------------------------------------------------------------------


@admin.register(Enrolment)
class EnrolmentAdmin(BigTableMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "campaign",
        "customer_column",
        "subject_key",
        "status",
        "holdout",
        "next_position",
        "due_at",
        "enrolled_at",
        "converted_at",
    ]
    list_filter = ["campaign", "status", "holdout"]
    search_fields = ["=subject_key"]  # shows the search box; the search itself is below
    search_help_text = "A customer id (#123), email or phone, or a subject such as cart:812."
    list_select_related = ["campaign", "customer"]
    ordering = ["-id"]
    fields = [
        ("campaign", "customer_column"),
        ("subject_key", "holdout"),
        ("status", "exit_reason"),
        ("next_position", "due_at", "deferrals", "last_deferral"),
        ("cart", "order", "variant"),
        ("sales_channel", "store"),
        ("enrolled_at", "finished_at"),
        ("converted_at", "converted_order", "revenue"),
    ]
    readonly_fields = flat(fields)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(subject_key=term)
        customer = customer_condition(term)
        if customer is not None:
            condition |= customer
        return queryset.filter(condition), False

    @admin.display(description="Customer")
    def customer_column(self, obj):
        return customer_link(obj.customer_id, str(obj.customer))


class WaitingFilter(admin.SimpleListFilter):
    title = "notified"
    parameter_name = "notified"

    def lookups(self, request, model_admin):
        return [("no", "Still waiting"), ("yes", "Notified")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(notified_at__isnull=self.value() == "no")
        return queryset


class ReasonFilter(admin.SimpleListFilter):
    """The suppression reasons, listed without reading the outbox (Django's filter for a
    plain text column would ask the database for its distinct values on every page)."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return SuppressionReason.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(reason=self.value())
        return queryset


@admin.register(Message)
class MessageAdmin(BigTableMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "campaign",
        "step_position",
        "customer_column",
        "channel",
        "status",
        "reason",
        "sent_at",
        "delivered_at",
        "clicked_at",
    ]
    # Creation ranges (today, past 7 days, ...) over the created_at index; no date hierarchy,
    # whose DISTINCT over the dates would read every message on each view of the list.
    list_filter = [
        "status",
        ReasonFilter,
        "channel",
        "campaign",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["=provider_id"]  # shows the search box; the search itself is below
    search_help_text = "A message id, a customer (#123, email or phone) or the provider's id."
    list_select_related = ["campaign", "customer", "channel", "step"]
    ordering = ["-id"]
    fields = [
        ("campaign", "step", "enrolment"),
        ("customer_column", "channel", "is_marketing"),
        ("status", "reason", "attempts"),
        "detail",
        ("to", "provider_id"),
        "preview",
        ("created_at", "next_attempt_at", "sending_since"),
        ("sent_at", "delivered_at", "failed_at"),
        ("clicked_at", "clicks"),
    ]
    readonly_fields = flat(fields)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(provider_id=term)
        if is_id(term):
            condition |= Q(pk=int(term))
        customer = customer_condition(term)
        if customer is not None:
            condition |= customer
        return queryset.filter(condition), False

    @admin.display(description="Step")
    def step_position(self, obj):
        return obj.step.position

    @admin.display(description="Customer")
    def customer_column(self, obj):
        return customer_link(obj.customer_id, str(obj.customer))


@admin.register(BackInStockSubscription)
class BackInStockSubscriptionAdmin(BigTableMixin, admin.ModelAdmin):
    """Customers waiting for a variant (subscribed from the API or the store pages); a
    subscription may be deleted on the customer's request."""

    list_display = ["customer_column", "variant", "channel", "source", "created_at", "notified_at"]
    list_filter = [WaitingFilter, "channel"]
    search_fields = ["=variant__sku"]  # shows the search box; the search itself is below
    search_help_text = "A SKU, or a customer (#123, email or phone)."
    list_select_related = ["customer", "variant", "channel"]
    ordering = ["-id"]
    fields = ["customer_column", "variant", "channel", "source", "created_at", "notified_at"]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(variant__sku=term)
        customer = customer_condition(term)
        if customer is not None:
            condition |= customer
        return queryset.filter(condition), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Customer")
    def customer_column(self, obj):
        return customer_link(obj.customer_id, str(obj.customer))


@admin.register(Attribution)
class AttributionAdmin(BigTableMixin, ReadOnlyAdmin):
    list_display = [
        "order_link",
        "campaign",
        "channel",
        "basis",
        "amount",
        "touched_at",
        "placed_at",
    ]
    list_filter = ["campaign", "channel", "basis"]
    search_fields = ["=order__number"]
    search_help_text = "An order number."
    list_select_related = ["order", "campaign", "channel"]
    date_hierarchy = "placed_at"
    ordering = ["-placed_at"]
    fields = [
        "order_link",
        ("campaign", "step", "channel"),
        ("message", "basis"),
        ("touched_at", "placed_at", "attributed_at"),
        "amount",
    ]
    readonly_fields = flat(fields)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().upper()
        if not term:
            return queryset, False
        return queryset.filter(order__number=term), False

    @admin.display(description="Order")
    def order_link(self, obj):
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.number)

    @admin.display(description="Revenue")
    def amount(self, obj):
        return f"{obj.revenue} {obj.currency}"


@admin.register(SignageScan)
class SignageScanAdmin(ReadOnlyAdmin):
    """Scans of in-store QR signs per day, store and product; the sheet of a store's signs is
    printed from here."""

    list_display = ["day", "store", "variant", "scans"]
    list_filter = ["store"]
    search_fields = ["=variant__sku", "=store__code"]
    list_select_related = ["store", "variant"]
    date_hierarchy = "day"
    ordering = ["-day", "-scans"]
    change_list_template = "admin/campaigns/signagescan/change_list.html"

    def changelist_view(self, request, extra_context=None):
        from inventory.models import Location, LocationKind

        stores = Location.objects.filter(kind=LocationKind.STORE).order_by("code")
        extra_context = {
            **(extra_context or {}),
            "signage_stores": list(stores.values_list("code", "name")),
            "signage_url": reverse("admin:campaigns_signage_sheet_choose"),
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path(
                "sheet/",
                self.admin_site.admin_view(self.sheet_choose_view),
                name="campaigns_signage_sheet_choose",
            ),
            path(
                "sheet/<str:store_code>/",
                self.admin_site.admin_view(self.sheet_view),
                name="campaigns_signage_sheet",
            ),
            *super().get_urls(),
        ]

    def sheet_choose_view(self, request):
        """The changelist's store picker: on to that store's sheet."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        code = (request.GET.get("store") or "").strip()
        if not code:
            raise Http404("Choose a store.")
        return HttpResponseRedirect(reverse("admin:campaigns_signage_sheet", args=[code]))

    def sheet_view(self, request, store_code):
        if not self.has_view_permission(request):
            raise PermissionDenied
        from campaigns.admin_preview import signage_sheet_view

        return signage_sheet_view(request, store_code)
