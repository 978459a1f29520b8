from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class OmniConfig(AppConfig):
    name = "omni"
    verbose_name = "Omni core"

    def ready(self):
        from . import checks, schedules  # noqa: F401 - checks register themselves
        from .api import token_cache

        post_migrate.connect(schedules.ensure_periodic_tasks, sender=self)
        # Every PostgreSQL connection listens for API client changes from the start.
        connection_created.connect(token_cache.listen, dispatch_uid="omni.api.token_cache")
