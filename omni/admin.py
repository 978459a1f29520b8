from django.contrib import admin, messages
from django.utils.html import format_html

from omni.admin_utils import (
    CHANNEL_INLINES,
    CHANNEL_SAVED_HOOKS,
    ReadOnlyAdmin,
    ServiceAdminMixin,
)
from omni.exceptions import OmniError
from omni.models import ApiClient, Channel, IdempotencyKey, OutboxEvent
from omni.services import api_client_create, api_client_issue_token

admin.site.site_header = "Omni administration"
admin.site.site_title = "Omni"
admin.site.index_title = "Catalog, channels and operations"


@admin.register(Channel)
class ChannelAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["code", "name", "kind", "currency", "is_active", "updated_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]
    list_select_related = []
    ordering = ["code"]

    def get_readonly_fields(self, request, obj=None):
        # The code is how integrators and feeds address a channel: fixed once created.
        return ["code"] if obj else []

    def get_inlines(self, request, obj):
        # Sections added by later apps (inventory's stock policy and rules), without omni
        # importing them: see omni.admin_utils.register_channel_inline.
        extensions = [
            inline
            for inline in CHANNEL_INLINES
            if getattr(inline, "shown_for", lambda channel: True)(obj)
        ]
        return [*super().get_inlines(request, obj), *extensions]

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if "data" in kwargs and f"{prefix}-TOTAL_FORMS" not in kwargs["data"]:
            # A post without an extension's section (a form from before it existed) leaves
            # that section's rows as they are, instead of failing the whole save.
            kwargs["data"] = {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
        return kwargs

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        for hook in CHANNEL_SAVED_HOOKS:
            message = hook(request=request, channel=form.instance, form=form, formsets=formsets)
            if message:
                self.message_user(request, message, messages.SUCCESS)


@admin.register(ApiClient)
class ApiClientAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["name", "channel", "access", "is_active", "token_hint", "last_used_at"]
    list_filter = ["access", "is_active", "channel"]
    search_fields = ["name", "token_prefix"]
    list_select_related = ["channel"]
    autocomplete_fields = ["channel"]
    readonly_fields = ["token_hint", "token_issued_at", "last_used_at", "created_by", "created_at"]
    fields = ["name", "channel", "access", "is_active", *readonly_fields]
    actions = ["issue_new_token"]

    def get_fields(self, request, obj=None):
        # api_client_create makes an active client: "active" is offered once the client exists.
        return self.fields if obj else [f for f in self.fields if f != "is_active"]

    @admin.display(description="Token")
    def token_hint(self, obj):
        if not obj.pk:
            return "Issued when you save; shown once."
        return format_html("<code>omni_{}_…</code>", obj.token_prefix)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        client, token = api_client_create(
            name=obj.name, access=obj.access, channel=obj.channel, created_by=request.user
        )
        obj.pk = client.pk
        obj.refresh_from_db()
        self._show_token(request, obj, token)

    @admin.action(
        description="Issue a new token (the old one stops working)", permissions=["change"]
    )
    def issue_new_token(self, request, queryset):
        for client in queryset:
            try:
                token = api_client_issue_token(client=client)
            except OmniError as exc:
                self.message_user(request, f"{client}: {exc}", messages.ERROR)
                continue
            self._show_token(request, client, token)

    def _show_token(self, request, client, token):
        self.message_user(
            request,
            format_html(
                "Token for <strong>{}</strong>: <code>{}</code> — copy it now, it is stored "
                "hashed and will not be shown again.",
                client.name,
                token,
            ),
            messages.WARNING,
        )


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "subject_type", "subject_id", "occurred_at", "delivered_at"]
    list_filter = ["type", "subject_type"]
    search_fields = ["subject_id", "type"]
    date_hierarchy = "occurred_at"


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["key", "principal", "method", "path", "status", "response_status", "expires_at"]
    list_filter = ["status", "method"]
    search_fields = ["key", "principal", "path"]
