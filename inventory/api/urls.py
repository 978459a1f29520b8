from django.urls import re_path

from inventory.api.views import (
    AvailabilityBatchView,
    AvailabilityView,
    LocationViewSet,
    MovementBatchDetailView,
    MovementBatchView,
    ReservationViewSet,
    StockCountViewSet,
    StockView,
    TransferViewSet,
)
from omni.api.routers import OptionalSlashRouter

CHANNEL = r"(?P<channel>[-a-zA-Z0-9_]+)"
SKU = r"(?P<sku>[^/]+)"

router = OptionalSlashRouter()
router.register("locations", LocationViewSet, basename="location")
router.register("counts", StockCountViewSet, basename="stock-count")
router.register("transfers", TransferViewSet, basename="transfer")
router.register("reservations", ReservationViewSet, basename="reservation")

urlpatterns = [
    # The availability lookup first: it takes most of the traffic. "batch" before the SKU route
    # (SKUs are upper case, so a SKU named BATCH is still looked up as /BATCH/).
    re_path(
        rf"^availability/{CHANNEL}/batch/?$",
        AvailabilityBatchView.as_view(),
        name="availability-batch",
    ),
    re_path(rf"^availability/{CHANNEL}/{SKU}/?$", AvailabilityView.as_view(), name="availability"),
    re_path(rf"^stock/{SKU}/?$", StockView.as_view(), name="stock"),
    re_path(r"^movements/batches/?$", MovementBatchView.as_view(), name="movement-batches"),
    re_path(
        r"^movements/batches/(?P<batch_id>[^/]+)/?$",
        MovementBatchDetailView.as_view(),
        name="movement-batch",
    ),
    *router.urls,
]
