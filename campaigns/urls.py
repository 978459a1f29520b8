"""Public tracking pages: tracked links, unsubscribe, in-store signage QR codes (included at the
site root, so the addresses in messages and on signs stay short)."""

from django.urls import path

from campaigns import tracking

app_name = "campaigns"

urlpatterns = [
    path("t/<str:token>", tracking.link_click, name="click"),
    path("u/<str:token>", tracking.unsubscribe, name="unsubscribe"),
    path("q/<str:store_code>/<str:sku>", tracking.signage_scan, name="signage"),
]
