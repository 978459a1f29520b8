from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OmniConfig(AppConfig):
    name = "omni"
    verbose_name = "Omni core"

    def ready(self):
        from . import schedules

        post_migrate.connect(schedules.ensure_periodic_tasks, sender=self)
