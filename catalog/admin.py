"""The merchandisers' admin: products with variant and listing inlines, channel actions,
CSV import and export, and per-channel feeds. Every save goes through a catalog service."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from catalog.csvformat import COLUMNS
from catalog.feeds import feed_chunks, feed_content_type
from catalog.forms import (
    CatalogImportForm,
    ChannelActionForm,
    ChannelFeedForm,
    ListingForm,
    ProductForm,
    VariantForm,
)
from catalog.models import Brand, Category, ChannelFeed, ChannelListing, Product, Variant
from catalog.selectors import catalog_export_rows
from catalog.services import (
    catalog_import_csv,
    category_save,
    channel_feed_generate,
    listing_publish,
    listing_unpublish,
    listing_upsert,
    product_create,
    product_update,
    variant_create,
    variant_update,
)
from catalog.services.products import PRODUCT_FIELDS, VARIANT_FIELDS
from omni.admin_utils import (
    ServiceAdminMixin,
    choices_evaluated_once,
    csv_response,
    csv_text_guarded,
)
from omni.exceptions import OmniError, ValidationFailed
from omni.models import Channel

LISTING_FIELDS = (
    "price",
    "currency",
    "is_published",
    "title",
    "description",
    "available_from",
    "available_until",
)


# --- Filters ----------------------------------------------------------------------------------


class _ListingFilter(admin.SimpleListFilter):
    listing_field = "product_id"

    def lookups(self, request, model_admin):
        return [(c.code, c.name) for c in Channel.objects.sales().order_by("code")]

    def _listings(self):
        return ChannelListing.objects.filter(**{self.listing_field: OuterRef("pk")})


class ListedOnFilter(_ListingFilter):
    title = "listed on channel"
    parameter_name = "listed_on"

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(Exists(self._listings().filter(channel__code=self.value())))
        return queryset


class PublishedOnFilter(_ListingFilter):
    title = "published on channel"
    parameter_name = "published_on"

    def lookups(self, request, model_admin):
        return [("__none__", "Nowhere"), *super().lookups(request, model_admin)]

    def queryset(self, request, queryset):
        published = self._listings().filter(is_published=True)
        if self.value() == "__none__":
            return queryset.filter(~Exists(published))
        if self.value():
            return queryset.filter(Exists(published.filter(channel__code=self.value())))
        return queryset


class VariantListedOnFilter(ListedOnFilter):
    listing_field = "variant_id"


class VariantPublishedOnFilter(PublishedOnFilter):
    listing_field = "variant_id"


# --- Channel actions shared by products, variants and listings ---------------------------------


class ChannelActionsMixin:
    action_form = ChannelActionForm
    actions = ["publish_on_channel", "unpublish_on_channel"]

    # Each admin using this mixin defines variant_ids_for(queryset): the variants its rows mean.

    def _chosen_channel(self, request):
        code = request.POST.get("channel")
        channel = Channel.objects.filter(code=code).first() if code else None
        if channel is None:
            self.message_user(
                request,
                "Choose a channel in the action bar, then run the action again. Nothing changed.",
                messages.ERROR,
            )
        return channel

    def _channel_action(self, request, queryset, run) -> None:
        """Run ``run(channel, variant_ids)`` (one service call) and show its message."""
        channel = self._chosen_channel(request)
        if channel is None:
            return
        try:
            message = run(channel, self.variant_ids_for(queryset))
        except OmniError as exc:
            self.message_user(request, f"Nothing changed: {exc}", messages.ERROR)
            return
        self.message_user(request, message, messages.SUCCESS)

    @admin.action(
        description="Publish on channel… (choose the channel in the action bar)",
        permissions=["change"],
    )
    def publish_on_channel(self, request, queryset):
        def run(channel, ids):
            result = listing_publish(variants=ids, channel=channel)
            return (
                f"Published on {channel.name}: {result.published} listing(s) published, "
                f"{result.created} created at the base price, "
                f"{result.unchanged} already published."
            )

        self._channel_action(request, queryset, run)

    @admin.action(
        description="Unpublish on channel… (choose the channel in the action bar)",
        permissions=["change"],
    )
    def unpublish_on_channel(self, request, queryset):
        def run(channel, ids):
            changed = listing_unpublish(variants=ids, channel=channel)
            return f"Unpublished {changed} listing(s) on {channel.name}."

        self._channel_action(request, queryset, run)


# --- Brands and categories --------------------------------------------------------------------


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["name", "product_count", "created_at"]
    search_fields = ["name"]
    list_select_related = []

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(product_count=Count("products"))

    @admin.display(description="Products", ordering="product_count")
    def product_count(self, obj):
        return obj.product_count


@admin.register(Category)
class CategoryAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["path", "parent", "created_at"]
    search_fields = ["path", "name"]
    list_select_related = ["parent"]
    autocomplete_fields = ["parent"]
    readonly_fields = ["path"]

    def save_model(self, request, obj, form, change):
        saved = category_save(
            category=Category.objects.get(pk=obj.pk) if change else None,
            name=form.cleaned_data["name"],
            parent=form.cleaned_data.get("parent"),
        )
        obj.pk = saved.pk
        obj.refresh_from_db()


# --- Products ---------------------------------------------------------------------------------


class VariantInline(admin.TabularInline):
    model = Variant
    form = VariantForm
    extra = 0
    show_change_link = True
    fields = ["sku", "gtin", "option_values", "weight_grams", "base_price", "is_active"]


class ListingInline(admin.TabularInline):
    model = ChannelListing
    form = ListingForm
    fk_name = "product"
    extra = 0
    fields = ["variant", "channel", *LISTING_FIELDS]
    verbose_name_plural = "Channel listings (save new variants first, then list them here)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("variant", "channel")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "variant":
            object_id = request.resolver_match.kwargs.get("object_id")
            kwargs["queryset"] = Variant.objects.filter(product_id=object_id or 0)
        if db_field.name == "channel":
            kwargs["queryset"] = Channel.objects.sales()
        return choices_evaluated_once(super().formfield_for_foreignkey(db_field, request, **kwargs))


def save_variant_formset(formset, product):
    """Save a variant inline through the services."""
    formset.save(commit=False)
    for obj in formset.deleted_objects:
        obj.delete()
    for form in formset.forms:
        if form in formset.deleted_forms or not form.has_changed() or not form.cleaned_data:
            continue
        data = {f: form.cleaned_data[f] for f in VARIANT_FIELDS if f in form.cleaned_data}
        if form.instance.pk and not form.instance._state.adding:
            variant_update(variant=Variant.objects.get(pk=form.instance.pk), **data)
        else:
            form.instance = variant_create(product=product, sku=form.cleaned_data["sku"], **data)


def save_listing_formset(formset):
    """Save a listing inline through the services."""
    formset.save(commit=False)
    for obj in formset.deleted_objects:
        obj.delete()
    for form in formset.forms:
        if form in formset.deleted_forms or not form.has_changed() or not form.cleaned_data:
            continue
        variant = form.cleaned_data.get("variant") or form.instance.variant
        channel = form.cleaned_data.get("channel") or form.instance.channel
        form.instance = listing_upsert(
            variant=variant,
            channel=channel,
            **{f: form.cleaned_data[f] for f in LISTING_FIELDS if f in form.cleaned_data},
        )


@admin.register(Product)
class ProductAdmin(ServiceAdminMixin, ChannelActionsMixin, admin.ModelAdmin):
    form = ProductForm
    list_display = [
        "title",
        "handle",
        "brand",
        "category",
        "variant_count",
        "is_active",
        "updated_at",
    ]
    list_filter = [ListedOnFilter, PublishedOnFilter, "category", "brand", "is_active"]
    search_fields = ["title", "handle", "^variants__sku", "=variants__gtin"]
    list_select_related = ["brand", "category"]
    autocomplete_fields = ["brand", "category"]
    inlines = [VariantInline, ListingInline]
    show_full_result_count = False
    list_per_page = 50
    actions = ["publish_on_channel", "unpublish_on_channel", "export_selected"]
    change_list_template = "admin/catalog/product/change_list.html"

    def get_queryset(self, request):
        # A subquery, not Count("variants"): searching by SKU joins the variants a second time
        # and a joined count would multiply.
        variants = (
            Variant.objects.filter(product=OuterRef("pk"))
            .order_by()
            .values("product")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(variant_count=Coalesce(Subquery(variants), 0))

    def get_readonly_fields(self, request, obj=None):
        return ["handle", "created_at", "updated_at"] if obj else []

    @admin.display(description="Variants", ordering="variant_count")
    def variant_count(self, obj):
        return obj.variant_count

    def variant_ids_for(self, queryset):
        return Variant.objects.filter(product__in=queryset).values_list("pk", flat=True)

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_data[f] for f in PRODUCT_FIELDS if f in form.cleaned_data}
        if change:
            product_update(product=Product.objects.get(pk=obj.pk), **data)
        else:
            created = product_create(handle=form.cleaned_data.get("handle"), **data)
            obj.pk = created.pk
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        if formset.model is Variant:
            save_variant_formset(formset, form.instance)
        elif formset.model is ChannelListing:
            save_listing_formset(formset)
        else:
            super().save_formset(request, form, formset, change)

    @admin.action(description="Export selected products as CSV")
    def export_selected(self, request, queryset):
        return csv_response(
            csv_text_guarded(catalog_export_rows(queryset)), "catalog-selection.csv"
        )

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="catalog_product_import",
            ),
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="catalog_product_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return csv_response(csv_text_guarded(catalog_export_rows()), "catalog.csv")

    def import_view(self, request):
        # An import both creates and updates products.
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = CatalogImportForm(request.POST or None, request.FILES or None)
        errors = []
        if request.method == "POST" and form.is_valid():
            try:
                result = catalog_import_csv(stream=form.cleaned_data["file"])
            except ValidationFailed as exc:
                errors = exc.extra.get("errors", [])
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Imported {result.summary()}", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:catalog_product_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import catalog CSV",
            "opts": self.model._meta,
            "form": form,
            "errors": errors,
            "columns": COLUMNS,
        }
        return TemplateResponse(request, "admin/catalog/product/import.html", context)


@admin.register(Variant)
class VariantAdmin(ServiceAdminMixin, ChannelActionsMixin, admin.ModelAdmin):
    form = VariantForm
    list_display = ["sku", "product", "gtin", "options", "base_price", "is_active", "updated_at"]
    list_filter = [
        VariantListedOnFilter,
        VariantPublishedOnFilter,
        "product__category",
        "product__brand",
        "is_active",
    ]
    search_fields = ["^sku", "=gtin", "product__title"]
    list_select_related = ["product"]
    autocomplete_fields = ["product"]
    show_full_result_count = False
    fields = ["product", *VariantForm.Meta.fields]

    def get_inlines(self, request, obj):
        return [VariantListingInline] if obj else []

    def get_readonly_fields(self, request, obj=None):
        # A variant stays with its product (variant_update does not move it).
        return ["product"] if obj else []

    @admin.display(description="Options")
    def options(self, obj):
        return obj.options_label

    def variant_ids_for(self, queryset):
        return queryset.values_list("pk", flat=True)

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_data[f] for f in VARIANT_FIELDS if f in form.cleaned_data}
        if change:
            variant_update(variant=Variant.objects.get(pk=obj.pk), **data)
        else:
            created = variant_create(
                product=form.cleaned_data["product"], sku=form.cleaned_data["sku"], **data
            )
            obj.pk = created.pk
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        save_listing_formset(formset)


class VariantListingInline(admin.TabularInline):
    model = ChannelListing
    form = ListingForm
    fk_name = "variant"
    extra = 0
    fields = ["channel", *LISTING_FIELDS]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "channel":
            kwargs["queryset"] = Channel.objects.sales()
        return choices_evaluated_once(super().formfield_for_foreignkey(db_field, request, **kwargs))


@admin.register(ChannelListing)
class ChannelListingAdmin(ServiceAdminMixin, ChannelActionsMixin, admin.ModelAdmin):
    form = ListingForm
    list_display = [
        "variant",
        "channel",
        "is_published",
        "price",
        "currency",
        "available_from",
        "available_until",
        "updated_at",
    ]
    list_filter = ["channel", "is_published", "currency"]
    search_fields = ["^variant__sku", "product__title"]
    list_select_related = ["variant", "channel"]
    autocomplete_fields = ["variant"]
    show_full_result_count = False
    fields = ["variant", "channel", *LISTING_FIELDS, "published_at"]
    readonly_fields = ["published_at"]

    def get_readonly_fields(self, request, obj=None):
        return ["variant", "channel", "published_at"] if obj else ["published_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "channel":
            kwargs["queryset"] = Channel.objects.sales()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def variant_ids_for(self, queryset):
        return queryset.values_list("variant_id", flat=True)

    def save_model(self, request, obj, form, change):
        listing = listing_upsert(
            variant=form.cleaned_data.get("variant") or obj.variant,
            channel=form.cleaned_data.get("channel") or obj.channel,
            **{f: form.cleaned_data[f] for f in LISTING_FIELDS if f in form.cleaned_data},
        )
        obj.pk = listing.pk
        obj.refresh_from_db()


@admin.register(ChannelFeed)
class ChannelFeedAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = ChannelFeedForm
    list_display = [
        "channel",
        "format",
        "field_list",
        "published_only",
        "last_generated_at",
        "last_row_count",
        "download",
    ]
    list_filter = ["format", "published_only"]
    search_fields = ["channel__code", "channel__name"]
    list_select_related = ["channel"]
    readonly_fields = ["last_generated_at", "last_row_count", "last_file"]
    actions = ["generate_now"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "channel":
            kwargs["queryset"] = Channel.objects.sales()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fields(self, request, obj=None):
        return ["channel", "format", "fields_text", "published_only", *self.readonly_fields]

    @admin.display(description="Fields")
    def field_list(self, obj):
        return ", ".join(obj.fields) or "(default)"

    @admin.display(description="Feed")
    def download(self, obj):
        url = reverse("admin:catalog_channelfeed_download", args=[obj.pk])
        return format_html('<a href="{}">Download {}</a>', url, obj.format.upper())

    @admin.action(description="Generate the feed file now", permissions=["change"])
    def generate_now(self, request, queryset):
        for feed in queryset.select_related("channel"):
            try:
                generated = channel_feed_generate(channel=feed.channel)
            except OmniError as exc:
                self.message_user(request, f"{feed.channel.code}: {exc}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"{feed.channel.code}: {generated.last_row_count} rows written to "
                f"{generated.last_file}.",
                messages.SUCCESS,
            )

    def get_urls(self):
        return [
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="catalog_channelfeed_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        feed = get_object_or_404(ChannelFeed.objects.select_related("channel"), pk=pk)
        try:
            chunks = feed_chunks(feed)
        except OmniError as exc:
            self.message_user(request, f"{feed.channel.code}: {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:catalog_channelfeed_changelist"))
        response = StreamingHttpResponse(chunks, content_type=feed_content_type(feed))
        response["Content-Disposition"] = (
            f'attachment; filename="{feed.channel.code}.{feed.format}"'
        )
        return response
