"""Wire formats shared by the API and hot read paths that skip serializers."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone
from django.utils.dateparse import parse_datetime

# Clocks of tills and phones run a little fast; times further ahead are refused.
FUTURE_SLACK = timedelta(minutes=5)


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


def parse_past_time(value, now):
    """An event time from an integrator: ``(moment, None)`` or ``(None, error)``.

    Empty means ``now``; the time must be ISO 8601 with a zone and not lie in the future.
    """
    if value in (None, ""):
        return now, None
    try:
        moment = value if isinstance(value, datetime) else parse_datetime(str(value))
    except ValueError:  # well formed but impossible, such as 2026-02-30
        moment = None
    if moment is None:
        return None, "Not an ISO 8601 date and time."
    if timezone.is_naive(moment):
        return None, "Give a time zone (e.g. 2026-11-22T10:00:00+01:00 or ...Z)."
    if moment > now + FUTURE_SLACK:
        return None, "Lies in the future."
    return moment, None
