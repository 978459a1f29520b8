from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from omni import views
from orders.confirmation import order_confirmation

urlpatterns = [
    # The integrator API first: it takes most of the traffic.
    path("api/v1/catalog/", include("catalog.api.urls")),
    path("api/v1/inventory/", include("inventory.api.urls")),
    path("api/v1/customers/", include("customers.api.urls")),
    path("api/v1/orders/", include("orders.api.urls")),
    path("api/v1/campaigns/", include("campaigns.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("omni.api.urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path(
        "pickup/<str:token>/",
        order_confirmation,
        name="order-confirmation",
    ),
    path("store/", include("orders.urls")),
    path("", include("campaigns.urls")),
]

handler404 = "omni.urls.not_found"
handler500 = "omni.urls.server_error"


def not_found(request, exception=None):
    from django.views.defaults import page_not_found

    from omni.api.errors import api_not_found

    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    return page_not_found(request, exception)


def server_error(request):
    from django.views.defaults import server_error as html_server_error

    from omni.api.errors import api_server_error

    if request.path.startswith("/api/"):
        return api_server_error(request)
    return html_server_error(request)
