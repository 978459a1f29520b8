from omni.api.routers import OptionalSlashRouter
from omni.api.views import ChannelViewSet

router = OptionalSlashRouter()
router.register("channels", ChannelViewSet, basename="channel")

urlpatterns = router.urls
