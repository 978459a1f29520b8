"""The catalog CSV format, shared by import and export: one row per variant and channel.

A product spans several rows (one per variant); a variant listed on several channels spans
one row per channel. ``channel`` empty means a variant with no listing on that row.
``attributes`` and ``options`` are ``key=value`` pairs separated by ``;``.
"""

COLUMNS = [
    "handle",
    "title",
    "brand",
    "category",
    "description",
    "attributes",
    "sku",
    "gtin",
    "options",
    "weight_grams",
    "base_price",
    "channel",
    "published",
    "price",
    "currency",
    "channel_title",
    "channel_description",
    "available_from",
    "available_until",
]
REQUIRED_COLUMNS = ["handle", "title", "brand", "category", "sku", "base_price"]
TRUE_VALUES = {"1", "true", "yes", "y"}
FALSE_VALUES = {"0", "false", "no", "n", ""}


def format_pairs(data: dict) -> str:
    return "; ".join(f"{k}={v}" for k, v in data.items())


def parse_pairs(text: str) -> dict:
    """``"colour=Red; size=M"`` to a dict. Raises ValueError on a malformed pair."""
    result = {}
    for chunk in (text or "").split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        key, sep, value = chunk.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{chunk!r} is not key=value")
        result[key.strip()] = value.strip()
    return result
