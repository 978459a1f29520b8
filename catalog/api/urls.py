from django.urls import re_path

from catalog.api.views import ChannelFeedView, ProductViewSet, VariantViewSet
from omni.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("products", ProductViewSet, basename="product")
router.register("variants", VariantViewSet, basename="variant")

urlpatterns = [
    re_path(r"^feeds/(?P<code>[-a-zA-Z0-9_]+)/?$", ChannelFeedView.as_view(), name="channel-feed"),
    *router.urls,
]
