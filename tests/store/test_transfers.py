"""Receiving a transfer at the store."""

import pytest

from inventory.models import MovementKind, StockLevel, StockMovement, Transfer, TransferStatus
from inventory.services import stock_receive, transfer_request, transfer_ship
from tests.factories import VariantFactory
from tests.store.conftest import url

pytestmark = pytest.mark.django_db


def _stock(location, sku):
    row = StockLevel.objects.filter(location=location, variant__sku=sku).first()
    return row.on_hand if row else 0


def _received_state(transfer):
    transfer.refresh_from_db()
    return (
        transfer.status,
        sorted(transfer.lines.values_list("variant__sku", "received_quantity")),
        StockMovement.objects.filter(kind=MovementKind.TRANSFER_IN).count(),
    )


def test_list_shows_shipped_transfers_to_this_store(
    client_a, stores, shipped_transfer, django_assert_max_num_queries
):
    # More shipped transfers to A, and one to B, one only requested: bounded queries.
    scarf = VariantFactory(sku="HAT-01")
    stock_receive(location=stores["lille"], variant=scarf, quantity=50)
    for _ in range(4):
        t = transfer_request(
            from_location=stores["lille"],
            to_location=stores["a"],
            lines=[{"sku": "HAT-01", "quantity": 2}],
        )
        transfer_ship(transfer=t)
    to_b = transfer_ship(
        transfer=transfer_request(
            from_location=stores["lille"],
            to_location=stores["b"],
            lines=[{"sku": "HAT-01", "quantity": 1}],
        )
    )
    requested = transfer_request(
        from_location=stores["lille"],
        to_location=stores["a"],
        lines=[{"sku": "HAT-01", "quantity": 1}],
    )
    with django_assert_max_num_queries(9):
        response = client_a.get(url("transfers", stores["a"]))
    assert response.status_code == 200
    listed = [t.number for t in response.context["transfers"]]
    assert len(listed) == 5
    assert listed[0] == shipped_transfer.number
    assert to_b.number not in listed and requested.number not in listed
    assert response.context["transfers"][0].shipped_units == 14


def test_receive_page_defaults_to_what_was_shipped(client_a, stores, shipped_transfer):
    response = client_a.get(url("transfer", stores["a"], shipped_transfer.number))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="qty_LINEN-M" value="10"' in html
    assert 'name="qty_SCARF-01" value="4"' in html
    assert "Receive TR-" in html


def test_receive_everything(client_a, stores, shipped_transfer):
    response = client_a.post(
        url("transfer", stores["a"], shipped_transfer.number),
        {"qty_LINEN-M": "10", "qty_SCARF-01": "4"},
        follow=True,
    )
    assert response.redirect_chain == [(url("transfers", stores["a"]), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        f"Transfer {shipped_transfer.number} received: 14 units."
    ]
    transfer = Transfer.objects.get()
    assert transfer.status == TransferStatus.RECEIVED
    assert _stock(stores["a"], "LINEN-M") == 10
    assert _stock(stores["a"], "SCARF-01") == 4
    movement = StockMovement.objects.get(kind=MovementKind.TRANSFER_IN, variant__sku="LINEN-M")
    assert movement.actor.username == "anna"
    assert response.context["transfers"] == []


def test_receive_short(client_a, stores, shipped_transfer):
    response = client_a.post(
        url("transfer", stores["a"], shipped_transfer.number),
        {"qty_LINEN-M": "8", "qty_SCARF-01": "4"},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        f"Transfer {shipped_transfer.number} received: 12 units. 2 short of what was shipped."
    ]
    assert sorted(
        Transfer.objects.get().lines.values_list("variant__sku", "received_quantity")
    ) == [
        ("LINEN-M", 8),
        ("SCARF-01", 4),
    ]
    assert _stock(stores["a"], "LINEN-M") == 8


@pytest.mark.parametrize(
    ("data", "field_error"),
    [
        ({"qty_LINEN-M": "11", "qty_SCARF-01": "4"}, "At most 10."),
        ({"qty_LINEN-M": "-1", "qty_SCARF-01": "4"}, "A whole number, 0 or more."),
        ({"qty_LINEN-M": "ten", "qty_SCARF-01": "4"}, "Enter a whole number."),
        ({"qty_SCARF-01": "4"}, "Enter a quantity."),
    ],
)
def test_bad_quantities_are_refused_on_the_page(
    client_a, stores, shipped_transfer, data, field_error
):
    before = _received_state(shipped_transfer)
    response = client_a.post(url("transfer", stores["a"], shipped_transfer.number), data)
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["qty_LINEN-M"] == [field_error]
    assert field_error in response.content.decode()
    assert _received_state(shipped_transfer) == before
    assert before[0] == TransferStatus.SHIPPED
    assert _stock(stores["a"], "LINEN-M") == 0


def test_service_message_heads_the_form(client_a, stores, shipped_transfer):
    response = client_a.post(
        url("transfer", stores["a"], shipped_transfer.number),
        {"qty_LINEN-M": "11", "qty_SCARF-01": "4"},
    )
    assert response.context["form"].non_field_errors() == ["Check the received quantities."]


def test_a_transfer_received_already_cannot_be_received_again(client_a, stores, shipped_transfer):
    address = url("transfer", stores["a"], shipped_transfer.number)
    client_a.post(address, {"qty_LINEN-M": "10", "qty_SCARF-01": "4"})
    before = _received_state(shipped_transfer)
    page = client_a.get(address)
    assert page.status_code == 200
    assert b"Receive TR-" not in page.content
    response = client_a.post(address, {"qty_LINEN-M": "10", "qty_SCARF-01": "4"})
    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        f"Transfer {shipped_transfer.number} is received; this needs it shipped."
    ]
    assert _received_state(shipped_transfer) == before
    assert _stock(stores["a"], "LINEN-M") == 10


def test_unknown_transfer_is_not_found(client_a, stores):
    assert client_a.get(url("transfer", stores["a"], "TR-999999")).status_code == 404


def test_the_sender_cannot_receive_its_own_transfer(django_user_model, stores, shipped_transfer):
    from django.test import Client

    from orders.models import StaffAssignment

    user = django_user_model.objects.create_user(username="vera", password="x")
    StaffAssignment.objects.create(user=user, location=stores["versailles"])
    client = Client()
    client.force_login(user)
    before = _received_state(shipped_transfer)
    address = url("transfer", stores["versailles"], shipped_transfer.number)
    assert client.get(address).status_code == 403
    response = client.post(address, {"qty_LINEN-M": "10", "qty_SCARF-01": "4"})
    assert response.status_code == 403
    assert b"is not coming to this store" in response.content
    assert _received_state(shipped_transfer) == before
