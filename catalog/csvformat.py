"""The catalog CSV format, shared by import and export: one row per variant and channel.

A product spans several rows (one per variant); a variant listed on several channels spans
one row per channel. ``channel`` empty means a variant with no listing on that row.
``attributes`` and ``options`` are ``key=value`` pairs separated by ``;``; a ``;`` or ``\\``
inside a value (or an ``=`` inside a key) is escaped with a backslash.
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


ESCAPABLE = "\\;="  # after a backslash, these stand for themselves
KEY_SPECIAL, VALUE_SPECIAL = "\\;=", "\\;"


def _escape(text, special: str) -> str:
    return "".join("\\" + ch if ch in special else ch for ch in str(text))


def format_pairs(data: dict) -> str:
    """``{"colour": "Red", "size": "M"}`` to ``"colour=Red; size=M"``.

    A ``\\``, ``;`` (or ``=`` in a key) inside a key or value is escaped with a backslash, so
    that ``parse_pairs`` gives the same dict back: ``care=wash cold\\; dry flat``.
    """
    return "; ".join(
        f"{_escape(k, KEY_SPECIAL)}={_escape(v, VALUE_SPECIAL)}" for k, v in data.items()
    )


def _scan(text: str):
    """``(character, escaped)`` pairs: a backslash before ``\\``, ``;`` or ``=`` escapes it.

    Any other backslash is an ordinary character, so ``C:\\temp`` reads as written.
    """
    index = 0
    while index < len(text):
        ch = text[index]
        if ch == "\\" and index + 1 < len(text) and text[index + 1] in ESCAPABLE:
            yield text[index + 1], True
            index += 2
        else:
            yield ch, False
            index += 1


def parse_pairs(text: str) -> dict:
    """``"colour=Red; size=M"`` to a dict. Raises ValueError on a malformed pair."""
    chunks = [[]]
    for ch, escaped in _scan(text or ""):
        if ch == ";" and not escaped:
            chunks.append([])
        else:
            chunks[-1].append((ch, escaped))
    result = {}
    for chunk in chunks:
        whole = "".join(ch for ch, _ in chunk).strip()
        if not whole:
            continue
        equals = next((i for i, (ch, esc) in enumerate(chunk) if ch == "=" and not esc), None)
        key = "".join(ch for ch, _ in chunk[:equals]).strip() if equals is not None else ""
        if not key:
            raise ValueError(f"{whole!r} is not key=value")
        result[key] = "".join(ch for ch, _ in chunk[equals + 1 :]).strip()
    return result
