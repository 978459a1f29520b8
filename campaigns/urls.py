"""Public tracking pages: tracked links, unsubscribe, in-store signage QR codes."""

app_name = "campaigns"

urlpatterns: list = []
