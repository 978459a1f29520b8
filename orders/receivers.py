"""Orders follow the transfers their pickups wait for (inventory's transfer hooks; inventory
does not know orders). Each receiver calls one service."""

from .services.lifecycle import transfer_arrived, transfer_lost


def on_transfer_received(sender, transfer, received, **kwargs) -> None:
    transfer_arrived(transfer=transfer, received=received)


def on_transfer_cancelled(sender, transfer, **kwargs) -> None:
    transfer_lost(transfer=transfer)
