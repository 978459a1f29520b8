"""What every store page shares: sign-in, the store in the URL and the assignment check, the
current store in the session, and how service errors reach the page.

Every store page lives under ``/store/<location code>/``. ``store_page`` loads that location
only among the stores the user is assigned to (``StaffAssignment``), so the one rule "staff of
store A cannot see or change anything of store B" is checked in one place, before the view
runs: an anonymous visitor goes to the sign-in page, a user not assigned to the store (or to no
store at all) gets 403 and nothing runs. Views that load an object of a store (a transfer, a
count) check that it belongs to the store of the URL with ``forbidden``.
"""

import zoneinfo
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from inventory.models import Location
from omni.exceptions import OmniError

SESSION_KEY = "store.current"


def login_url() -> str:
    return reverse("store:login")


def assigned_stores(user) -> list[Location]:
    """The stores ``user`` works in, by code (one query)."""
    return list(Location.objects.filter(staff_assignments__user=user).order_by("code"))


def forbidden(request, message: str, stores=None):
    """The 403 page of the store pages: says why, offers the user's own stores."""
    return render(
        request,
        "store/forbidden.html",
        {"message": message, "stores": stores if stores is not None else []},
        status=403,
    )


def signed_in(view):
    """Anonymous visitors go to the store sign-in page (and come back after)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url())
        return view(request, *args, **kwargs)

    return wrapper


def store_page(view):
    """A page of the store ``location_code``: ``view(request, location, ...)``.

    Signed-in users only; the store must be one the user is assigned to, else 403 (whether or
    not such a store exists, so codes are not probed). The store becomes the current one in the
    session, ``request.store`` and ``request.stores`` feed the header, and times are shown (and
    form times read) in the store's time zone.
    """

    @wraps(view)
    def wrapper(request, location_code, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url())
        stores = assigned_stores(request.user)
        location = next((store for store in stores if store.code == location_code), None)
        if location is None:
            return forbidden(
                request,
                "You are not assigned to this store."
                if stores
                else "Your account is not assigned to any store.",
                stores,
            )
        if request.session.get(SESSION_KEY) != location.code:
            request.session[SESSION_KEY] = location.code
        request.store, request.stores = location, stores
        try:
            zone = zoneinfo.ZoneInfo(location.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = timezone.get_default_timezone()
        with timezone.override(zone):
            response = view(request, location, *args, **kwargs)
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
        return response

    return wrapper


def go(name: str, location: Location, *args, query: str = ""):
    """Redirect to the store page ``name`` of ``location``."""
    url = reverse(f"store:{name}", args=[location.code, *args])
    return redirect(f"{url}?{query}" if query else url)


def flatten_errors(extra, prefix: str = "") -> list[tuple[str, str]]:
    """``OmniError.extra`` as ``(path, message)`` pairs: ``{"lines": {"0": {"quantity":
    ["..."]}}}`` gives ``("lines.0.quantity", "...")``."""
    pairs = []
    if isinstance(extra, dict):
        for key, value in extra.items():
            pairs += flatten_errors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(extra, list | tuple):
        for value in extra:
            if isinstance(value, dict | list | tuple):
                pairs += flatten_errors(value, prefix)
            else:
                pairs.append((prefix, str(value)))
    elif extra not in (None, ""):
        pairs.append((prefix, str(extra)))
    return pairs


def add_service_error(form, exc: OmniError, field_for=None) -> None:
    """Show a refused write on ``form``: the service's message at the top (it is written for
    people and stands on its own), and each detail of ``extra`` next to the field it names
    (``field_for(path)`` maps a detail's path to a field name; by default the path itself)."""
    form.add_error(None, exc.message)
    for path, message in flatten_errors(exc.extra):
        name = field_for(path) if field_for else path
        if name in form.fields:
            form.add_error(name, message)


def error_text(exc: OmniError) -> str:
    """A service's refusal as one sentence with its details, for a flash message."""
    details = [message for _, message in flatten_errors(exc.extra) if message not in exc.message]
    return " ".join([exc.message, *details])


def plural(number: int, word: str) -> str:
    """``plural(1, "unit")`` is "1 unit", ``plural(14, "unit")`` "14 units"."""
    return f"{number} {word}{'' if number == 1 else 's'}"
