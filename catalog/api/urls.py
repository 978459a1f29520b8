from django.urls import re_path

from catalog.api.views import ChannelFeedView, ProductViewSet, VariantViewSet
from omni.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
# Variants first: Django tries the patterns in order, and the SKU lookup is the hottest read.
router.register("variants", VariantViewSet, basename="variant")
router.register("products", ProductViewSet, basename="product")

urlpatterns = [
    *router.urls,
    re_path(r"^feeds/(?P<code>[-a-zA-Z0-9_]+)/?$", ChannelFeedView.as_view(), name="channel-feed"),
]
