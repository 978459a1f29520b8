"""Responses for hot read paths."""

from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


def rendered_now(view, request, data, *, status: int = 200):
    """``Response(data, status=status)``, rendered here when content negotiation chose JSON.

    DRF renders a ``Response`` later, through Django's ``SimpleTemplateResponse`` machinery,
    which on the SKU lookup cost about as much CPU as encoding the JSON itself. This gives the
    same bytes and headers: the renderer and media type content negotiation chose (so
    ``Accept: application/json; indent=4`` still indents), the renderer's context, and its
    media type as ``Content-Type``; the view's ``finalize_response`` still adds ``Allow`` and
    ``Vary``. Other renderers (the browsable API in development) get a ``Response`` as usual.
    The result has no ``.data``: use it where nothing after the view reads it (not with
    ``Idempotency-Key`` writes, which store the response's data).
    """
    renderer = request.accepted_renderer
    if not isinstance(renderer, JSONRenderer) or data is None:
        return Response(data, status=status)
    content_type = renderer.media_type
    if renderer.charset is not None:
        content_type = f"{content_type}; charset={renderer.charset}"
    body = renderer.render(data, request.accepted_media_type, view.get_renderer_context())
    return HttpResponse(body, status=status, content_type=content_type)
