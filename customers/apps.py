from django.apps import AppConfig
from django.db.models.signals import post_save, pre_delete, pre_save


class CustomersConfig(AppConfig):
    name = "customers"

    def ready(self):
        from inventory.models import Location
        from omni.models import Channel

        from . import receivers

        for model, saved in (
            (Channel, receivers.on_channel_saved),
            (Location, receivers.on_location_saved),
        ):
            uid = f"customers.{model._meta.model_name}"
            pre_save.connect(receivers.on_code_saving, sender=model, dispatch_uid=uid)
            post_save.connect(saved, sender=model, dispatch_uid=uid)
        pre_delete.connect(
            receivers.on_location_deleting, sender=Location, dispatch_uid="customers.location"
        )
