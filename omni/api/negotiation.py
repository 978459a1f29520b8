from rest_framework.negotiation import DefaultContentNegotiation


class JSONFirstContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, short-cut for the common case of an integrator that states no
    preference: without an ``Accept`` header (or with ``*/*``) the first renderer is chosen
    straight away instead of parsing media types on every request (nor the query string, when
    there is none, for a ``?format=`` override)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        accept = request.META.get("HTTP_ACCEPT")
        if (
            (accept is None or accept == "*/*")
            and not format_suffix
            and renderers
            and (
                not request.META.get("QUERY_STRING")
                or not request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            )
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
