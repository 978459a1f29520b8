"""Admin pages wired by the campaigns admin through ``get_urls`` and ``admin_site.admin_view``
(which brings sign-in and staff checks):

- ``template_preview_view(request, template_id)``: every rendition of a template for a customer
  chosen by id (``?customer=<id>``), or with sample data; the template's problems above them.
- ``signage_sheet_view(request, store_code)``: a printable sheet of QR signs for the items a
  store has in stock (``?q=`` filters by SKU or title, ``?page=`` pages through).
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.safestring import mark_safe

from campaigns.models import SENDABLE_KINDS, Template
from campaigns.rendering import preview_details, sms_info, template_problems
from campaigns.services.tracking import signage_qr_svg, signage_url
from customers.models import Customer
from customers.selectors import survivor_of
from inventory.models import Location, LocationKind, StockLevel

KIND_LABELS = {"email": "Email", "sms": "SMS", "push": "Push", "social_dm": "Social message"}
SIGNS_PER_PAGE = 24


def _int(value) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def _chosen_customer(request) -> tuple[Customer | None, str, str]:
    """(customer, error, note) from ``?customer=<id>``."""
    raw = request.GET.get("customer", "").strip()
    if not raw:
        return None, "", ""
    if not request.user.has_perm("customers.view_customer"):
        return None, "You may not view customers: the preview uses sample data.", ""
    pk = _int(raw)
    survivor = survivor_of(pk) if pk else None
    customer = Customer.objects.filter(pk=survivor).first() if survivor else None
    if customer is None:
        return None, f"There is no customer #{raw}: the preview uses sample data.", ""
    note = (
        f"Customer #{pk} was merged into customer #{survivor}, shown here."
        if survivor != pk
        else ""
    )
    return customer, "", note


def _admin_url(name: str, *args) -> str:
    try:
        return reverse(f"admin:{name}", args=args)
    except NoReverseMatch:  # the model is not in the admin
        return ""


def template_preview_view(request, template_id):
    if not request.user.has_perm("campaigns.view_template"):
        raise PermissionDenied
    template = Template.objects.filter(pk=_int(template_id) or 0).first()
    if template is None:
        raise Http404("No such template.")
    customer, customer_error, customer_note = _chosen_customer(request)
    renditions, sampled = preview_details(template, customer)
    problems = template_problems(template)
    rows = []
    for kind in SENDABLE_KINDS:
        rendered = renditions[kind]
        row = {
            "kind": kind,
            "label": KIND_LABELS.get(kind, kind),
            "has_rendition": template.has_rendition(kind),
            "rendered": rendered,
        }
        if kind == "sms":
            row["sms"] = dict(
                zip(("encoding", "characters", "segments"), sms_info(rendered.text), strict=True)
            )
        rows.append(row)
    context = {
        **admin.site.each_context(request),
        "opts": Template._meta,
        "title": f"Preview of {template}",
        "template_obj": template,
        "changelist_url": _admin_url("campaigns_template_changelist"),
        "change_url": _admin_url("campaigns_template_change", template.pk),
        "customer": customer,
        "customer_value": request.GET.get("customer", ""),
        "customer_error": customer_error,
        "customer_note": customer_note,
        "sampled": sampled,
        "rows": rows,
        "problems": [
            (Template._meta.get_field(name).verbose_name, messages)
            for name, messages in problems.items()
        ],
    }
    return TemplateResponse(request, "admin/campaigns/template_preview.html", context)


def signage_sheet_view(request, store_code):
    if not (
        request.user.has_perm("inventory.view_location")
        and request.user.has_perm("catalog.view_variant")
    ):
        raise PermissionDenied
    # A code with a NUL character names nothing (PostgreSQL text cannot hold one).
    store = (
        None
        if "\x00" in store_code
        else Location.objects.filter(code=store_code, kind=LocationKind.STORE).first()
    )
    if store is None:
        raise Http404("No such store.")
    levels = (
        StockLevel.objects.filter(
            location=store, on_hand__gt=0, variant__is_active=True, variant__product__is_active=True
        )
        .select_related("variant__product")
        .order_by("variant__sku")
    )
    search = request.GET.get("q", "").strip()
    if "\x00" in search:
        levels = levels.none()  # no SKU nor title holds one
    elif search:
        levels = levels.filter(
            Q(variant__sku__icontains=search) | Q(variant__product__title__icontains=search)
        )
    page = Paginator(levels, SIGNS_PER_PAGE).get_page(request.GET.get("page"))
    signs = [
        {
            "variant": level.variant,
            "url": signage_url(store.code, level.variant.sku),
            "qr": mark_safe(signage_qr_svg(store, level.variant)),  # segno's own SVG
        }
        for level in page.object_list
    ]
    context = {
        "title": f"QR signs of {store.name}",
        "store": store,
        "signs": signs,
        "page": page,
        "search": search,
    }
    return TemplateResponse(request, "admin/campaigns/signage_sheet.html", context)
