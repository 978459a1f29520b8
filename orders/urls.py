"""The store-staff pages, mounted at ``/store/``. Every page of a store carries its code
(``/store/paris-01/stock/``), so the assignment check is one decorator (``store_page``)."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from orders.forms import StoreSignInForm
from orders.views import (
    carts,
    counts,
    customers,
    dashboard,
    pickups,
    returns,
    stock,
    subscriptions,
    transfers,
)

app_name = "store"

urlpatterns = [
    path(
        "sign-in/",
        auth_views.LoginView.as_view(
            template_name="store/login.html",
            authentication_form=StoreSignInForm,
            next_page=reverse_lazy("store:home"),
        ),
        name="login",
    ),
    path(
        "sign-out/",
        auth_views.LogoutView.as_view(next_page=reverse_lazy("store:login")),
        name="logout",
    ),
    path("", dashboard.home, name="home"),
    path("switch/", dashboard.switch, name="switch"),
    path("<slug:location_code>/", dashboard.dashboard, name="dashboard"),
    path("<slug:location_code>/pickups/", pickups.pickup_queue, name="pickups"),
    path("<slug:location_code>/pickups/scan/", pickups.pickup_scan, name="pickup_scan"),
    path("<slug:location_code>/pickups/<str:number>/", pickups.pickup_detail, name="pickup"),
    path(
        "<slug:location_code>/pickups/<str:number>/ready/",
        pickups.pickup_ready,
        name="pickup_ready",
    ),
    path(
        "<slug:location_code>/pickups/<str:number>/collect/",
        pickups.pickup_collect,
        name="pickup_collect",
    ),
    path("<slug:location_code>/returns/", returns.return_start, name="returns"),
    path("<slug:location_code>/returns/<str:number>/", returns.return_order, name="return_order"),
    path(
        "<slug:location_code>/carts/<str:token>/continue/",
        carts.cart_continue,
        name="cart_continue",
    ),
    path("<slug:location_code>/stock/", stock.stock, name="stock"),
    path("<slug:location_code>/back-in-stock/", subscriptions.back_in_stock, name="back_in_stock"),
    path("<slug:location_code>/transfers/", transfers.transfer_list, name="transfers"),
    path(
        "<slug:location_code>/transfers/<str:number>/",
        transfers.transfer_receive_page,
        name="transfer",
    ),
    path("<slug:location_code>/counts/", counts.count_list, name="counts"),
    path("<slug:location_code>/counts/new/", counts.count_new, name="count_new"),
    path("<slug:location_code>/counts/<int:pk>/", counts.count_detail, name="count"),
    path("<slug:location_code>/customers/", customers.customer_search, name="customers"),
    path("<slug:location_code>/customers/<int:pk>/", customers.customer_detail, name="customer"),
    path(
        "<slug:location_code>/customers/<int:pk>/timeline/",
        customers.customer_timeline_page,
        name="customer_timeline",
    ),
    path(
        "<slug:location_code>/customers/<int:pk>/consent/",
        customers.customer_consent,
        name="customer_consent",
    ),
    path(
        "<slug:location_code>/customers/<int:pk>/note/",
        customers.customer_note,
        name="customer_note",
    ),
]
