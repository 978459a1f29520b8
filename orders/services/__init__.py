"""Order services: the one place for each rule of carts, orders, fulfilment and returns
(style: ``<entity>_<verb>``)."""

from .carts import (
    cart_create,
    cart_identify,
    cart_line_add,
    cart_line_remove,
    cart_line_update,
    cart_lock,
    carts_abandon,
)
from .common import LineInput, order_lock
from .lifecycle import (
    TRANSITIONS,
    allowed,
    order_cancel,
    order_collect,
    order_mark_ready,
    order_ship,
)
from .placement import order_place, order_place_from_cart
from .pos import pos_channel, pos_sale_record
from .returns import ReturnLineInput, return_create

__all__ = [
    "TRANSITIONS",
    "LineInput",
    "ReturnLineInput",
    "allowed",
    "cart_create",
    "cart_identify",
    "cart_line_add",
    "cart_line_remove",
    "cart_line_update",
    "cart_lock",
    "carts_abandon",
    "order_cancel",
    "order_collect",
    "order_lock",
    "order_mark_ready",
    "order_place",
    "order_place_from_cart",
    "order_ship",
    "pos_channel",
    "pos_sale_record",
    "return_create",
]
