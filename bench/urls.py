"""Omni's URLs plus the framework floor: the cheapest response Django can give."""

from django.http import JsonResponse
from django.urls import path

from omni.urls import handler404, handler500  # noqa: F401 (the URLconf's error handlers)
from omni.urls import urlpatterns as omni_urlpatterns


def floor(request):
    """Baseline A: the full middleware stack and URL resolving, no DRF, no database."""
    return JsonResponse({"ok": True})


urlpatterns = [
    path("bench/floor", floor, name="bench-floor"),
    *omni_urlpatterns,
]
