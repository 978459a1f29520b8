"""Normalisation and validation of catalog identifiers: the one place for these rules."""

import re

from django.core.exceptions import ValidationError

# Matched with ``fullmatch``: in Python ``$`` also matches before a final newline, which the
# database constraints (same patterns) do not accept.
SKU_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,63}$")
SKU_DB_REGEX = r"^[A-Z0-9][A-Z0-9._-]{0,63}$"
GTIN_RE = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() accepts "²" and "٣"
GTIN_LENGTHS = (8, 12, 13, 14)
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def normalize_sku(value: str) -> str:
    """SKUs are the same on every channel: trimmed, upper case, inner spaces as dashes."""
    return re.sub(r"\s+", "-", (value or "").strip()).upper()


def validate_sku(value: str) -> None:
    if value != normalize_sku(value):
        raise ValidationError(
            "SKU must be normalised (upper case, no spaces): %(sku)s.",
            code="sku_not_normalised",
            params={"sku": value},
        )
    if not SKU_RE.fullmatch(value):
        raise ValidationError(
            "SKU %(sku)r is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            code="sku_invalid",
            params={"sku": value},
        )


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit for the digits of a GTIN without its check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def normalize_gtin(value: str | None) -> str | None:
    value = re.sub(r"[\s-]", "", value or "")
    return value or None


def validate_gtin(value: str) -> None:
    if not GTIN_RE.fullmatch(value) or len(value) not in GTIN_LENGTHS:
        raise ValidationError(
            "GTIN %(gtin)r must be 8, 12, 13 or 14 digits.",
            code="gtin_invalid",
            params={"gtin": value},
        )
    expected = gtin_check_digit(value[:-1])
    if int(value[-1]) != expected:
        raise ValidationError(
            "GTIN %(gtin)s has a wrong check digit (expected %(expected)s).",
            code="gtin_check_digit",
            params={"gtin": value, "expected": expected},
        )


def normalize_currency(value: str | None) -> str:
    return (value or "").strip().upper()


def validate_currency(value: str) -> None:
    if not CURRENCY_RE.fullmatch(value or ""):
        raise ValidationError(
            "Currency %(currency)r must be a three-letter ISO 4217 code.",
            code="currency_invalid",
            params={"currency": value},
        )
