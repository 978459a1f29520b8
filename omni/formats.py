"""Wire formats shared by the API and hot read paths that skip serializers."""

from decimal import Decimal

from django.utils import timezone


def api_datetime(value, zone=None):
    """A datetime as DRF writes it: ISO 8601 in the current time zone, UTC as ``Z``.

    Callers formatting many values pass ``zone`` (``timezone.get_current_timezone()``) once.
    """
    if value is None:
        return None
    text = value.astimezone(zone or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def api_money(value: Decimal | None):
    """A money amount as DRF's ``DecimalField(decimal_places=2)`` writes it."""
    return None if value is None else str(value.quantize(Decimal("0.01")))
