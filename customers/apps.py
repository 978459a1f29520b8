from django.apps import AppConfig
from django.db.models.signals import pre_save


class CustomersConfig(AppConfig):
    name = "customers"

    def ready(self):
        from inventory.models import Location
        from omni.models import Channel

        from .receivers import on_channel_saving, on_location_saving

        pre_save.connect(on_channel_saving, sender=Channel, dispatch_uid="customers.channel")
        pre_save.connect(on_location_saving, sender=Location, dispatch_uid="customers.location")
