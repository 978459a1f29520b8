from django.urls import re_path

from campaigns.api.views import (
    AudienceExportView,
    CampaignViewSet,
    EnrolmentViewSet,
    MessageViewSet,
    ReceiptView,
    SubscriptionViewSet,
)
from omni.api.routers import OptionalSlashRouter

app_name = "campaigns-api"

router = OptionalSlashRouter()
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("messages", MessageViewSet, basename="message")
router.register("enrolments", EnrolmentViewSet, basename="enrolment")

urlpatterns = [
    re_path(r"^audiences/export\.csv$", AudienceExportView.as_view(), name="audience-export"),
    re_path(r"^receipts/?$", ReceiptView.as_view(), name="receipts"),
    *router.urls,
]
