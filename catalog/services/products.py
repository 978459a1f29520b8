"""Products, variants, brands and categories."""

from decimal import Decimal

from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone
from django.utils.text import slugify

from catalog.models import Brand, Category, Product, Variant
from catalog.validators import normalize_gtin, normalize_sku
from omni.exceptions import ValidationFailed
from omni.services import outbox_emit

from .common import clean_instance, save_new, to_decimal

PRODUCT_FIELDS = ("title", "description", "brand", "category", "attributes", "is_active")
VARIANT_FIELDS = ("gtin", "option_values", "weight_grams", "base_price", "is_active")
VARIANT_CREATE_FIELDS = ("sku", *VARIANT_FIELDS)
CATEGORY_SEPARATOR = ">"
CENT = Decimal("0.01")


def variant_lock(ids) -> list[int]:
    """Lock the rows of the variants ``ids`` in primary-key order; return the ids found.

    Listing writes take it first, so that two of them on the same variants queue up instead
    of both inserting the missing listing (one would fail on the unique constraint).
    """
    return list(
        Variant.objects.select_for_update()
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def brand_get_or_create(*, name: str) -> Brand:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("A brand needs a name.", extra={"brand": ["Required."]})
    brand, _ = Brand.objects.get_or_create(name=name)
    return brand


def category_split_path(path: str) -> list[str]:
    return [part.strip() for part in (path or "").split(CATEGORY_SEPARATOR) if part.strip()]


@transaction.atomic
def category_save(*, name: str, parent: Category | None, category: Category | None = None):
    """Create a category, or rename or move ``category``; the paths of its subtree follow."""
    name = (name or "").strip()
    if not name or CATEGORY_SEPARATOR in name:
        raise ValidationFailed(
            f"A category needs a name without {CATEGORY_SEPARATOR!r}.",
            extra={"name": [f"Required; {CATEGORY_SEPARATOR!r} separates the levels of a path."]},
        )
    ancestor = parent
    while category is not None and category.pk and ancestor is not None:
        if ancestor.pk == category.pk:
            raise ValidationFailed(
                "A category cannot be moved under itself or one of its subcategories.",
                code="category_cycle",
                extra={"parent": ["Choose a category outside this one's subtree."]},
            )
        ancestor = ancestor.parent
    category = category if category is not None else Category()
    old_path = category.path
    category.name, category.parent = name, parent
    category.path = f"{parent.path} {CATEGORY_SEPARATOR} {name}" if parent else name
    clean_instance(category, what="Category")
    category.save()
    if old_path and old_path != category.path:
        prefix = f"{old_path} {CATEGORY_SEPARATOR} "
        Category.objects.filter(path__startswith=prefix).update(
            path=Concat(
                Value(f"{category.path} {CATEGORY_SEPARATOR} "), Substr("path", len(prefix) + 1)
            )
        )
    return category


def category_ensure_path(*, path: str) -> Category:
    """The category at ``"Apparel > Tops"``, creating the missing nodes of the path."""
    parts = category_split_path(path)
    if not parts:
        raise ValidationFailed("A category path is required.", extra={"category": ["Required."]})
    parent = None
    for depth in range(len(parts)):
        full = f" {CATEGORY_SEPARATOR} ".join(parts[: depth + 1])
        parent, _ = Category.objects.get_or_create(
            path=full, defaults={"name": parts[depth], "parent": parent}
        )
    return parent


def _product_payload(product: Product) -> dict:
    return {
        "handle": product.handle,
        "title": product.title,
        "brand": product.brand.name,
        "category": product.category.path,
        "is_active": product.is_active,
    }


def _variant_payload(variant: Variant) -> dict:
    return {
        "sku": variant.sku,
        "product": variant.product.handle,
        "gtin": variant.gtin,
        "base_price": str(variant.base_price),
        "is_active": variant.is_active,
    }


@transaction.atomic
def product_create(
    *,
    title: str,
    brand: Brand,
    category: Category,
    handle: str | None = None,
    description: str = "",
    attributes: dict | None = None,
    is_active: bool = True,
    variants: list[dict] = (),
) -> Product:
    """Create a product with its variants (each a dict of ``variant_create`` arguments)."""
    handle = (handle or "").strip() or slugify(title)[:120]
    product = Product(
        handle=handle,
        title=(title or "").strip(),
        description=description or "",
        brand=brand,
        category=category,
        attributes=attributes or {},
        is_active=is_active,
    )
    clean_instance(product, what="Product")
    save_new(product, field="handle", message=f"A product with handle {handle!r} exists already.")
    outbox_emit(
        type="catalog.product.created",
        subject_type="product",
        subject_id=product.pk,
        payload=_product_payload(product),
    )
    seen = set()
    for index, data in enumerate(variants):
        unknown = sorted(set(data) - set(VARIANT_CREATE_FIELDS))
        if unknown:
            raise ValidationFailed(
                f"Unknown variant fields: {', '.join(unknown)}.",
                extra={f"variants[{index}].{f}": ["Unknown field."] for f in unknown},
            )
        sku = normalize_sku(data.get("sku", ""))
        if sku in seen:
            raise ValidationFailed(
                f"SKU {sku} appears twice in this product.",
                extra={f"variants[{index}].sku": ["Duplicate SKU in the request."]},
            )
        seen.add(sku)
        variant_create(product=product, **data)
    return product


@transaction.atomic
def product_update(*, product: Product, **changes) -> Product:
    unknown = set(changes) - set(PRODUCT_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"Unknown product fields: {', '.join(sorted(unknown))}.",
            extra={f: ["Unknown field."] for f in sorted(unknown)},
        )
    for field, value in changes.items():
        setattr(product, field, value)
    product.title = (product.title or "").strip()
    clean_instance(product, what="Product")
    product.save()
    outbox_emit(
        type="catalog.product.updated",
        subject_type="product",
        subject_id=product.pk,
        payload={**_product_payload(product), "changed": sorted(changes)},
    )
    return product


def _check_gtin_free(variant: Variant) -> None:
    """Refuse a GTIN held by another SKU, naming it (the constraint gives no field or SKU)."""
    if not variant.gtin:
        return
    owner = (
        Variant.objects.filter(gtin=variant.gtin)
        .exclude(pk=variant.pk)
        .values_list("sku", flat=True)
        .first()
    )
    if owner is not None:
        message = f"GTIN {variant.gtin} already belongs to SKU {owner}."
        raise ValidationFailed(message, extra={"gtin": [message]})


@transaction.atomic
def variant_create(
    *,
    product: Product,
    sku: str,
    base_price,
    gtin: str | None = None,
    option_values: dict | None = None,
    weight_grams: int | None = None,
    is_active: bool = True,
) -> Variant:
    variant = Variant(
        product=product,
        sku=normalize_sku(sku),
        gtin=normalize_gtin(gtin),
        option_values=option_values or {},
        weight_grams=weight_grams,
        base_price=to_decimal(base_price, field="base_price") if base_price is not None else None,
        is_active=is_active,
    )
    _check_gtin_free(variant)
    clean_instance(variant, what=f"Variant {variant.sku or '(no SKU)'}")
    variant.base_price = variant.base_price.quantize(CENT)  # "9.5" is stored, and sent, as 9.50
    save_new(variant, field="sku", message=f"Variant {variant.sku} or its GTIN exists already.")
    Product.objects.filter(pk=product.pk).update(updated_at=timezone.now())
    outbox_emit(
        type="catalog.variant.created",
        subject_type="variant",
        subject_id=variant.sku,
        payload=_variant_payload(variant),
    )
    return variant


@transaction.atomic
def variant_update(*, variant: Variant, **changes) -> Variant:
    """Change a variant. The SKU is its identity on every channel and cannot change."""
    if "sku" in changes and normalize_sku(changes["sku"]) != variant.sku:
        raise ValidationFailed(
            "A SKU cannot be changed: it identifies the item on every channel.",
            extra={"sku": ["Read only."]},
        )
    changes.pop("sku", None)
    unknown = set(changes) - set(VARIANT_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"Unknown variant fields: {', '.join(sorted(unknown))}.",
            extra={f: ["Unknown field."] for f in sorted(unknown)},
        )
    if "gtin" in changes:
        changes["gtin"] = normalize_gtin(changes["gtin"])
    if changes.get("base_price") is not None:
        changes["base_price"] = to_decimal(changes["base_price"], field="base_price")
    for field, value in changes.items():
        setattr(variant, field, value)
    _check_gtin_free(variant)
    clean_instance(variant, what=f"Variant {variant.sku}")
    variant.base_price = variant.base_price.quantize(CENT)
    variant.save()
    Product.objects.filter(pk=variant.product_id).update(updated_at=timezone.now())
    outbox_emit(
        type="catalog.variant.updated",
        subject_type="variant",
        subject_id=variant.sku,
        payload={**_variant_payload(variant), "changed": sorted(changes)},
    )
    return variant
