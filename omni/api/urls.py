from rest_framework.routers import SimpleRouter

from omni.api.views import ChannelViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("channels", ChannelViewSet, basename="channel")

urlpatterns = router.urls
