from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        from inventory.models import Transfer
        from inventory.signals import transfer_cancelled, transfer_received

        from .receivers import on_transfer_cancelled, on_transfer_received

        transfer_received.connect(on_transfer_received, sender=Transfer, dispatch_uid="orders")
        transfer_cancelled.connect(on_transfer_cancelled, sender=Transfer, dispatch_uid="orders")
