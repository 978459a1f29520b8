from django.urls import re_path

from customers.api.timeline import CustomerTimelineView
from customers.api.views import (
    ConversationViewSet,
    CustomerPrivacyViewSet,
    CustomerViewSet,
    SegmentViewSet,
    TouchpointBatchView,
)
from omni.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
# Literal paths first; customer ids are digits only, so no word is ever taken for one.
router.register("conversations", ConversationViewSet, basename="customer-conversation")
router.register("segments", SegmentViewSet, basename="customer-segment")
router.register("", CustomerPrivacyViewSet, basename="customer-privacy")
router.register("", CustomerViewSet, basename="customer")

urlpatterns = [
    # The timeline first: the hot read.
    re_path(
        r"^(?P<id>[0-9]{1,18})/timeline/?$",
        CustomerTimelineView.as_view(),
        name="customer-timeline",
    ),
    re_path(r"^touchpoints/batch/?$", TouchpointBatchView.as_view(), name="touchpoint-batch"),
    # The collection is the include's own path. DRF strips the "^/" an empty prefix's routes
    # start with, which would leave its "^/?$" as the invalid "^?$", so it is routed here.
    re_path(
        r"^$", CustomerViewSet.as_view({"get": "list", "post": "create"}), name="customer-list"
    ),
    *(url for url in router.urls if url.name != "customer-list"),
]
