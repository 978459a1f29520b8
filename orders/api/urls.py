from django.urls import re_path

from omni.api.routers import OptionalSlashRouter
from orders.api.views import CartViewSet, OrderViewSet, PosSaleView

router = OptionalSlashRouter()
# Literal paths first; order numbers are upper case (O-7KQ2-M9XD), so no word is taken for one.
router.register("carts", CartViewSet, basename="cart")
router.register("", OrderViewSet, basename="order")

urlpatterns = [
    re_path(r"^pos-sales/?$", PosSaleView.as_view(), name="pos-sales"),
    # The collection is the include's own path. DRF strips the "^/" an empty prefix's routes
    # start with, which would leave its "^/?$" as the invalid "^?$", so it is routed here.
    re_path(r"^$", OrderViewSet.as_view({"get": "list", "post": "create"}), name="order-list"),
    *(url for url in router.urls if url.name != "order-list"),
]
