"""Hooks later apps use to follow a transfer without inventory knowing them (dependencies
point one way: inventory <- orders). Sent by the transfer services inside their transaction,
after the transfer's rows are written; a receiver that raises rolls the transfer back, so
receivers catch what they can live with.

``transfer_received(transfer, received)``: ``received`` maps variant id to the units that
arrived. ``transfer_cancelled(transfer)``.
"""

from django.dispatch import Signal

transfer_received = Signal()
transfer_cancelled = Signal()
