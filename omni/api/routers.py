"""The router of every API app."""

from rest_framework.routers import SimpleRouter


class OptionalSlashRouter(SimpleRouter):
    """Routes that match with and without the trailing slash.

    ``SimpleRouter(trailing_slash=...)`` only knows "/" or nothing, so a path without the slash
    would get ``APPEND_SLASH``'s redirect, which drops the body of a POST, PUT or PATCH.
    """

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"
