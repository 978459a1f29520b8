from django.urls import path
from rest_framework.routers import SimpleRouter

from catalog.api.views import ChannelFeedView, ProductViewSet, VariantViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("products", ProductViewSet, basename="product")
router.register("variants", VariantViewSet, basename="variant")

urlpatterns = [
    path("feeds/<slug:code>/", ChannelFeedView.as_view(), name="channel-feed"),
    *router.urls,
]
