"""A test-only URLconf: the real one plus a deliberately slow idempotent POST and failing views.

``SlowWorkView`` signals ``started`` once it runs and then waits for ``release``, so a test can
send a second request with the same ``Idempotency-Key`` while the first one is still running.
Each run records one ``test.slow_work`` outbox event: the work a repeat must not do again.
"""

import threading

from django.urls import path
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from omni.api.idempotency import IdempotentMixin
from omni.services import outbox_emit
from omni.urls import urlpatterns as omni_urlpatterns

started = threading.Event()
release = threading.Event()


class SlowWorkView(IdempotentMixin, APIView):
    def post(self, request):
        started.set()
        release.wait(timeout=10)
        ref = str(request.data.get("ref", ""))
        event = outbox_emit(type="test.slow_work", subject_type="test", subject_id=ref)
        return Response({"ref": ref, "event": event.pk}, status=status.HTTP_201_CREATED)


def boom(request):
    raise RuntimeError("boom in a plain Django view")


urlpatterns = [
    path("api/v1/test/slow-work/", SlowWorkView.as_view()),
    path("api/v1/test/boom/", boom),
    path("boom/", boom),
    *omni_urlpatterns,
]

handler404 = "omni.urls.not_found"
handler500 = "omni.urls.server_error"
