"""The orders admin: read-only orders, carts and returns whose lists stay a bounded number of
queries, search by number, reference and customer identifiers, actions and page buttons that
call the order services (a refusal says why and changes nothing), and the store staff
assignments on their own list and on the user page."""

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from customers.identifiers import Identifier
from inventory.models import Reservation, Transfer
from orders.models import (
    Cart,
    Fulfilment,
    Order,
    OrderStatusChange,
    Return,
    StaffAssignment,
)
from orders.services import (
    ReturnLineInput,
    cart_create,
    order_collect,
    order_mark_ready,
    order_place,
    order_ship,
    pos_sale_record,
    return_create,
)
from tests.orders.conftest import lines

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def stocked(shop, stock):
    """Plenty of every variant at the warehouse and both stores."""
    for location in (shop.warehouse, shop.paris, shop.lyon):
        for variant in (shop.a, shop.b, shop.c):
            stock.put(location, variant, 100)
    return shop


def url(model, view="changelist", *args):
    return reverse(f"admin:orders_{model}_{view}", args=args)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def result_pks(response):
    assert response.status_code == 200
    return [obj.pk for obj in response.context["cl"].result_list]


def pickup(shop, email=None, store=None, sku="SKU-A", quantity=1):
    return order_place(
        channel=shop.web,
        lines=lines((sku, quantity)),
        fulfilment_method="pickup",
        store=store or shop.paris,
        identifiers=[Identifier("email", email)] if email else None,
        source="test",
    )


def shipped_order(shop, email=None, **extra):
    return order_place(
        channel=shop.web,
        lines=lines(("SKU-A", 1), ("SKU-B", 2)),
        fulfilment_method="ship",
        shipping_address="1 Rue de la Paix, Paris",
        identifiers=[Identifier("email", email)] if email else None,
        source="test",
        **extra,
    )


def full_order(shop, staff_user, index=0):
    """A shipped order with lines, history, a fulfilment and a return."""
    order = shipped_order(shop, email=f"buyer{index}@example.com")
    order_ship(order=order, source="test", carrier="DHL", tracking_number=f"T{index}")
    return_create(order=order, location=shop.paris, lines=[ReturnLineInput("1", 1)], source="test")
    return order


def state(order):
    """What an order action could change: the order, its history, its stock holds."""
    order.refresh_from_db()
    return (
        order.status,
        order.ready_at,
        order.closed_at,
        OrderStatusChange.objects.filter(order=order).count(),
        sorted(
            Reservation.objects.filter(reference=order.number).values_list("status", "quantity")
        ),
    )


# --- Changelists: a fixed number of queries however many rows ---------------------------------


def _order_row(shop, staff_user, index):
    kind = index % 3
    if kind == 0:
        pickup(shop, email=f"c{index}@example.com")
    elif kind == 1:
        shipped_order(shop, email=f"c{index}@example.com")
    else:
        pos_sale_record(store=shop.lyon, lines=lines(("SKU-C", 1)), source="test")


def _cart_row(shop, staff_user, index):
    cart_create(
        channel=shop.web,
        source="test",
        identifiers=[Identifier("email", f"cart{index}@example.com")] if index % 2 else None,
        lines=lines(("SKU-A", 1), ("SKU-B", 1)),
    )


def _return_row(shop, staff_user, index):
    full_order(shop, staff_user, index)


def _assignment_row(shop, staff_user, index):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=f"clerk{index}")
    StaffAssignment.objects.create(user=user, location=shop.paris if index % 2 else shop.lyon)


@pytest.mark.parametrize(
    ("model_name", "model", "make_row", "queries"),
    [
        ("order", Order, _order_row, 7),
        ("cart", Cart, _cart_row, 6),
        ("return", Return, _return_row, 6),
        ("staffassignment", StaffAssignment, _assignment_row, 6),
    ],
)
def test_changelist_query_count_does_not_grow_with_rows(
    admin_client,
    stocked,
    staff_user,
    django_assert_num_queries,
    model_name,
    model,
    make_row,
    queries,
):
    made = 0
    for rows in (3, 12):
        while made < rows:
            make_row(stocked, staff_user, made)
            made += 1
        with django_assert_num_queries(queries):
            response = admin_client.get(url(model_name))
        assert len(result_pks(response)) == model.objects.count() == rows


def test_change_pages_load_in_a_fixed_number_of_queries(
    admin_client, stocked, staff_user, django_assert_num_queries
):
    order = full_order(stocked, staff_user)
    cart = cart_create(
        channel=stocked.web,
        source="test",
        identifiers=[Identifier("email", "cart@example.com")],
        lines=lines(("SKU-A", 1), ("SKU-B", 2), ("SKU-C", 3)),
    )
    record = Return.objects.get()
    assignment = StaffAssignment.objects.create(user=staff_user, location=stocked.paris)

    with django_assert_num_queries(10):
        page = admin_client.get(url("order", "change", order.pk))
    assert page.status_code == 200
    assert [f.units for f in Fulfilment.objects.filter(order=order)] == [3]
    text = page.text
    assert order.number in text and "DHL" in text and record.number in text
    with django_assert_num_queries(8):
        assert admin_client.get(url("cart", "change", cart.pk)).status_code == 200
    with django_assert_num_queries(7):
        assert admin_client.get(url("return", "change", record.pk)).status_code == 200
    with django_assert_num_queries(7):
        assert admin_client.get(url("staffassignment", "change", assignment.pk)).status_code == 200
    with django_assert_num_queries(11):
        user_page = admin_client.get(reverse("admin:auth_user_change", args=[staff_user.pk]))
    assert user_page.status_code == 200
    assert "Stores this user works in" in user_page.text


# --- Search and filters -----------------------------------------------------------------------


def test_order_search_by_number_reference_and_customer_identifiers(admin_client, stocked):
    camille = pickup(stocked, email="Camille@Example.com")
    by_phone = order_place(
        channel=stocked.web,
        lines=lines(("SKU-B", 1)),
        fulfilment_method="pickup",
        store=stocked.paris,
        identifiers=[Identifier("phone", "+33611223344")],
        source="test",
    )
    marketplace = shipped_order(stocked, external_reference="MKP-1234")
    other = pickup(stocked, email="someone@example.com")

    def search(term):
        return result_pks(admin_client.get(url("order"), {"q": term}))

    assert search(camille.number.lower()) == [camille.pk]
    assert search("MKP-1234") == [marketplace.pk]
    assert search("camille@example.com") == [camille.pk]
    assert search("06 11 22 33 44") == [by_phone.pk]
    assert search("nobody@example.com") == []
    assert search("") == [other.pk, marketplace.pk, by_phone.pk, camille.pk]


def test_order_filters(admin_client, stocked):
    placed = pickup(stocked)
    ready = pickup(stocked, store=stocked.lyon)
    order_mark_ready(order=ready, source="test")
    ship = shipped_order(stocked)
    sale = pos_sale_record(store=stocked.paris, lines=lines(("SKU-C", 1)), source="test")
    Order.objects.filter(pk=ship.pk).update(needs_attention=True, attention_reason="Lost parcel")

    def listed(**params):
        return result_pks(admin_client.get(url("order"), params))

    assert listed(status__exact="ready") == [ready.pk]
    assert listed(fulfilment_method__exact="ship") == [ship.pk]
    assert listed(channel__id__exact=stocked.pos.pk) == [sale.pk]
    assert listed(store__id__exact=stocked.paris.pk) == [sale.pk, placed.pk]
    assert listed(needs_attention="yes") == [ship.pk]
    store_filter = next(
        spec
        for spec in admin_client.get(url("order")).context["cl"].filter_specs
        if getattr(spec, "field_path", "") == "store"
    )
    # Stores only: the warehouse is never an order's store.
    assert [label for _, label in store_filter.lookup_choices] == [
        f"lyon · {stocked.lyon.name}",
        f"paris · {stocked.paris.name}",
    ]


def test_cart_and_return_search(admin_client, stocked, staff_user):
    mine = cart_create(
        channel=stocked.web,
        source="test",
        identifiers=[Identifier("email", "camille@example.com")],
        lines=lines(("SKU-A", 1)),
    )
    anonymous = cart_create(channel=stocked.web, source="test", lines=lines(("SKU-B", 1)))
    order = full_order(stocked, staff_user)
    record = Return.objects.get()
    full_order(stocked, staff_user, 1)

    assert result_pks(admin_client.get(url("cart"), {"q": "CAMILLE@example.com"})) == [mine.pk]
    assert result_pks(admin_client.get(url("cart"), {"q": anonymous.token})) == [anonymous.pk]
    assert result_pks(admin_client.get(url("cart"), {"status__exact": "open"})) == [
        anonymous.pk,
        mine.pk,
    ]
    assert result_pks(admin_client.get(url("return"), {"q": record.number.lower()})) == [record.pk]
    assert result_pks(admin_client.get(url("return"), {"q": order.number})) == [record.pk]


# --- Read-only records ------------------------------------------------------------------------


def test_orders_carts_and_returns_are_never_added_changed_or_deleted(
    admin_client, stocked, staff_user
):
    order = full_order(stocked, staff_user)
    record = Return.objects.get()
    before = state(order)

    for model in ("order", "cart", "return"):
        assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.get(url("order", "delete", order.pk)).status_code == 403
    assert admin_client.get(url("return", "delete", record.pk)).status_code == 403
    page = admin_client.get(url("order", "change", order.pk))
    # The page is a view: no form to save, and a POST changes nothing.
    assert page.context["has_change_permission"] is False
    assert admin_client.post(url("order", "change", order.pk), {"note": "x"}).status_code == 403
    actions = admin_client.get(url("order")).context["action_form"].fields["action"].choices
    assert [name for name, _ in actions] == ["", "cancel", "mark_ready"]
    assert state(order) == before


# --- Actions ----------------------------------------------------------------------------------


def act(client, action, orders, **extra):
    return client.post(
        url("order"),
        {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in orders], **extra},
        follow=True,
    )


def test_mark_ready_action_calls_the_service_for_each_and_reports_refusals(
    admin_client, stocked, staff_user
):
    first, second = pickup(stocked), pickup(stocked, store=stocked.lyon)
    shipping = shipped_order(stocked)
    before = state(shipping)

    response = act(admin_client, "mark_ready", [first, second, shipping])

    assert messages_of(response) == [
        ("success", "Marked 2 orders ready for pickup: the customers are told."),
        (
            "warning",
            f"1 refused: {shipping.number}: Order {shipping.number} is placed (ship to the "
            "customer); it cannot be marked ready. (status: placed -> ready is not allowed.)",
        ),
    ]
    for order in (first, second):
        order.refresh_from_db()
        change = order.history.order_by("-at", "-pk").first()
        assert (order.status, change.to_status) == ("ready", "ready")
        assert (change.source, change.actor) == (f"user:{staff_user.pk}", staff_user)
    assert state(shipping) == before


def test_cancel_action_releases_the_stock_with_the_reason(admin_client, stocked, staff_user):
    placed = pickup(stocked, quantity=2)
    collected = pickup(stocked)
    order_mark_ready(order=collected, source="test")
    order_collect(order=collected, code=collected.pickup_code, source="test")
    before = state(collected)

    response = act(admin_client, "cancel", [placed, collected], reason="Out of stock in store")

    placed.refresh_from_db()
    change = placed.history.get(to_status="cancelled")
    assert placed.status == "cancelled"
    assert (change.note, change.source, change.actor) == (
        "Out of stock in store",
        f"user:{staff_user.pk}",
        staff_user,
    )
    assert list(
        Reservation.objects.filter(reference=placed.number).values_list("status", flat=True)
    ) == ["released"]
    assert state(collected) == before
    assert messages_of(response) == [
        ("success", "Cancelled 1 order: the stock held for them is released."),
        (
            "warning",
            f"1 refused: {collected.number}: Order {collected.number} is collected (pickup at "
            "a store); it cannot be cancelled. (status: collected -> cancelled is not allowed.)",
        ),
    ]


def test_actions_need_the_change_permission(client, stocked, django_user_model):
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(viewer)
    order = pickup(stocked)
    before = state(order)

    page = client.get(url("order"))
    response = client.post(url("order", "mark_ready", order.pk))

    assert page.status_code == 200
    assert "action_form" not in page.context or page.context["action_form"] is None
    assert response.status_code == 403
    assert state(order) == before


# --- The buttons of an order's page -----------------------------------------------------------


def test_order_page_offers_the_steps_its_status_allows(admin_client, stocked):
    placed_pickup = pickup(stocked)
    to_ship = shipped_order(stocked)
    sale = pos_sale_record(store=stocked.paris, lines=lines(("SKU-C", 1)), source="test")

    def tools(order):
        tools = admin_client.get(url("order", "change", order.pk)).context["order_tools"]
        return sorted(name for name, address in tools.items() if address)

    page = admin_client.get(url("order", "change", placed_pickup.pk)).text
    assert 'id="order-mark-ready"' in page and 'id="order-cancel"' in page
    assert 'id="order-ship"' not in page and "csrfmiddlewaretoken" in page
    assert tools(placed_pickup) == ["cancel_url", "mark_ready_url"]
    assert tools(to_ship) == ["cancel_url", "ship_url"]
    assert tools(sale) == []


def test_ship_button_ships_with_the_carrier_and_tracking_number(admin_client, stocked, staff_user):
    order = shipped_order(stocked)

    assert admin_client.get(url("order", "ship", order.pk)).status_code == 405
    response = admin_client.post(
        url("order", "ship", order.pk),
        {"carrier": "Colissimo", "tracking_number": "6A123"},
        follow=True,
    )

    order.refresh_from_db()
    fulfilment = Fulfilment.objects.get(order=order)
    assert order.status == "shipped"
    assert (fulfilment.carrier, fulfilment.tracking_number, fulfilment.units) == (
        "Colissimo",
        "6A123",
        3,
    )
    assert fulfilment.actor == staff_user
    assert messages_of(response) == [("success", f"Order {order.number} shipped.")]


def test_cancel_and_mark_ready_buttons(admin_client, stocked, staff_user):
    ready = pickup(stocked)
    cancelled = pickup(stocked)

    marked = admin_client.post(url("order", "mark_ready", ready.pk), follow=True)
    response = admin_client.post(
        url("order", "cancel", cancelled.pk), {"reason": "Customer called"}, follow=True
    )

    ready.refresh_from_db()
    cancelled.refresh_from_db()
    assert (ready.status, cancelled.status) == ("ready", "cancelled")
    assert cancelled.history.get(to_status="cancelled").note == "Customer called"
    assert response.redirect_chain[-1][0] == url("order", "change", cancelled.pk)
    assert messages_of(marked) == [
        ("success", f"Order {ready.number} is ready for pickup; the customer is told.")
    ]
    assert messages_of(response) == [
        (
            "success",
            f"Order {cancelled.number} cancelled; the stock held for it is released.",
        )
    ]


def test_a_refused_button_says_why_and_changes_nothing(admin_client, stocked):
    order = pickup(stocked)
    before = state(order)
    transfers = Transfer.objects.count()

    response = admin_client.post(
        url("order", "ship", order.pk), {"carrier": "DHL", "tracking_number": "1"}, follow=True
    )
    too_long = admin_client.post(
        url("order", "cancel", order.pk), {"reason": "x" * 301}, follow=True
    )

    assert messages_of(response) == [
        (
            "error",
            f"Nothing changed. Order {order.number} is placed (pickup at a store); it cannot "
            "ship. (status: placed -> shipped is not allowed.)",
        )
    ]
    assert messages_of(too_long) == [
        (
            "error",
            "Nothing changed. reason: Ensure this value has at most 300 characters (it has 301).",
        )
    ]
    assert state(order) == before
    assert Transfer.objects.count() == transfers
    assert admin_client.post(url("order", "ship", 999999)).status_code == 404


# --- Store staff ------------------------------------------------------------------------------


def test_staff_are_assigned_to_stores_on_the_user_page(admin_client, stocked, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", first_name="Sam")
    address = reverse("admin:auth_user_change", args=[clerk.pk])
    page = admin_client.get(address)
    assert page.status_code == 200

    data = {
        "username": "clerk",
        "first_name": "Sam",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "date_joined_0": "2025-01-01",
        "date_joined_1": "09:00:00",
        "initial-date_joined_0": "2025-01-01",
        "initial-date_joined_1": "09:00:00",
        "last_login_0": "",
        "last_login_1": "",
        "store_assignments-TOTAL_FORMS": "1",
        "store_assignments-INITIAL_FORMS": "0",
        "store_assignments-MIN_NUM_FORMS": "0",
        "store_assignments-MAX_NUM_FORMS": "1000",
        "store_assignments-0-location": str(stocked.paris.pk),
        "store_assignments-0-user": str(clerk.pk),
    }
    response = admin_client.post(address, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(StaffAssignment.objects.values_list("user__username", "location__code")) == [
        ("clerk", "paris")
    ]
    clerk.refresh_from_db()
    assert clerk.is_staff is False
    # The add page of a user has no stores yet (they come once the user exists).
    assert "Stores this user works in" not in admin_client.get(reverse("admin:auth_user_add")).text


def test_staff_assignment_list_add_and_autocomplete(admin_client, stocked, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk")

    response = admin_client.post(
        url("staffassignment", "add"), {"user": clerk.pk, "location": stocked.lyon.pk}
    )
    duplicate = admin_client.post(
        url("staffassignment", "add"), {"user": clerk.pk, "location": stocked.lyon.pk}
    )
    found = admin_client.get(
        reverse("admin:autocomplete"),
        {
            "term": "cle",
            "app_label": "orders",
            "model_name": "staffassignment",
            "field_name": "user",
        },
    )

    assert response.status_code == 302
    assert duplicate.status_code == 200  # the unique constraint, shown on the form
    assert StaffAssignment.objects.filter(user=clerk, location=stocked.lyon).count() == 1
    assert [r["text"] for r in found.json()["results"]] == ["clerk"]
    assert result_pks(admin_client.get(url("staffassignment"), {"q": "clerk"})) == [
        StaffAssignment.objects.get().pk
    ]


def test_return_admin_shows_the_lines_and_amounts(admin_client, stocked, staff_user):
    order = full_order(stocked, staff_user)
    record = Return.objects.get()

    page = admin_client.get(url("return", "change", record.pk))
    row = admin_client.get(url("return")).context["cl"].result_list[0]

    assert record.refund_amount == Decimal("10.00")
    assert "#1 SKU-A" in page.text
    assert (row.number, row.order.number) == (record.number, order.number)
