"""Inventory services: the one place for each stock rule (style: ``<entity>_<verb>``)."""

from .availability import availability_refresh, availability_state
from .common import stock_level_lock
from .counts import (
    discrepancy_approve,
    discrepancy_reject,
    stock_count_cancel,
    stock_count_submit,
    stock_reconcile,
)
from .reorder import (
    reorder_suggest,
    suggestion_create_transfer,
    suggestion_dismiss,
    suggestion_mark_ordered,
)
from .reservations import (
    ReserveLine,
    channel_sources,
    distance_km,
    reservations_expire,
    reservations_resource,
    sellable_quantities,
    stock_consume,
    stock_release,
    stock_reserve,
)
from .stock import (
    movement_batch_apply,
    stock_adjust,
    stock_count_request,
    stock_level_set_safety_stock,
    stock_receive,
    stock_return,
    stock_sell,
)
from .transfers import (
    in_transit,
    transfer_cancel,
    transfer_receive,
    transfer_request,
    transfer_ship,
)

__all__ = [
    "ReserveLine",
    "availability_refresh",
    "availability_state",
    "channel_sources",
    "distance_km",
    "discrepancy_approve",
    "discrepancy_reject",
    "in_transit",
    "movement_batch_apply",
    "reorder_suggest",
    "reservations_expire",
    "reservations_resource",
    "sellable_quantities",
    "stock_adjust",
    "stock_consume",
    "stock_count_cancel",
    "stock_count_request",
    "stock_count_submit",
    "stock_level_lock",
    "stock_level_set_safety_stock",
    "stock_receive",
    "stock_reconcile",
    "stock_release",
    "stock_reserve",
    "stock_return",
    "stock_sell",
    "suggestion_create_transfer",
    "suggestion_dismiss",
    "suggestion_mark_ordered",
    "transfer_cancel",
    "transfer_receive",
    "transfer_request",
    "transfer_ship",
]
