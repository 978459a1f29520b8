"""Stock lookup: this store, the nearest other stores with stock, what online channels promise."""

import pytest

from inventory.models import ChannelAvailability, StockLevel
from inventory.services import ReserveLine, availability_refresh, stock_receive, stock_reserve
from tests.factories import VariantFactory
from tests.store.conftest import url

pytestmark = pytest.mark.django_db


@pytest.fixture
def stocked(stores, variant, channels):
    """LINEN-M: A holds 8 (3 reserved); Versailles 5, Lille 2, Lyon 4, the warehouse 10;
    Lille's second item is all reserved."""
    for key, quantity in [("a", 8), ("versailles", 5), ("lille", 2), ("b", 4), ("wh", 10)]:
        stock_receive(location=stores[key], variant=variant, quantity=quantity)
    stock_reserve(
        channel=channels["web"],
        reference="O-1",
        lines=[ReserveLine(variant=variant, quantity=3, location=stores["a"])],
    )
    availability_refresh(variant_ids=[variant.pk])
    return variant


def _rows(html: str, testid: str, attribute: str) -> list[str]:
    """The ``data-<attribute>`` of each row of the table ``testid``, in page order."""
    start = html.index(f'data-testid="{testid}"')
    table = html[start : html.index("</table>", start)]
    return [part.split('"')[1] for part in table.split(f"data-{attribute}=")[1:]]


def test_lookup_by_sku(client_a, stores, stocked, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        response = client_a.get(url("stock", stores["a"]), {"q": "linen-m"})
    assert response.status_code == 200
    (result,) = response.context["results"]
    assert result["variant"].sku == "LINEN-M"
    assert result["here"] == {"on_hand": 8, "reserved": 3, "available": 5, "incoming": 0}
    nearest = [(o["location"].code, o["row"].sellable, round(o["km"])) for o in result["nearest"]]
    assert nearest == [("versailles-01", 5, 17), ("lille-01", 2, 203), ("lyon-01", 4, 394)]
    web = ChannelAvailability.objects.get(variant=stocked, channel__code="web")
    assert web.quantity == 26
    online = {
        entry["channel"].code: (entry["quantity"], entry["state"]) for entry in result["online"]
    }
    # Every active online sales channel (the seeded ones too), stores' tills left out.
    assert online == {
        "web": (26, "in_stock"),
        "marketplace": (0, "out_of_stock"),
        "app": (0, "out_of_stock"),
        "social-shop": (0, "out_of_stock"),
    }
    html = response.content.decode()
    assert _rows(html, "nearest", "location") == ["versailles-01", "lille-01", "lyon-01"]
    assert _rows(html, "online", "channel") == ["marketplace", "app", "social-shop", "web"]
    assert "wh-01" not in _rows(html, "nearest", "location")


def test_lookup_by_barcode(client_a, stores, stocked):
    response = client_a.get(url("stock", stores["a"]), {"q": "4006381333931"})
    assert [r["variant"].sku for r in response.context["results"]] == ["LINEN-M"]
    assert response.context["exact"] is True


def test_other_stores_without_sellable_stock_are_left_out(client_a, stores, stocked, channels):
    stock_reserve(
        channel=channels["web"],
        reference="O-2",
        lines=[ReserveLine(variant=stocked, quantity=2, location=stores["lille"])],
    )
    response = client_a.get(url("stock", stores["a"]), {"q": "LINEN-M"})
    codes = [o["location"].code for o in response.context["results"][0]["nearest"]]
    assert codes == ["versailles-01", "lyon-01"]


def test_lookup_seen_from_another_store(client_b, stores, stocked):
    response = client_b.get(url("stock", stores["b"]), {"q": "LINEN-M"})
    (result,) = response.context["results"]
    assert result["here"] == {"on_hand": 4, "reserved": 0, "available": 4, "incoming": 0}
    codes = [o["location"].code for o in result["nearest"]]
    assert codes == ["paris-01", "versailles-01", "lille-01"]


def test_lookup_shows_what_is_on_its_way(client_a, stores, shipped_transfer):
    response = client_a.get(url("stock", stores["a"]), {"q": "SCARF-01"})
    (result,) = response.context["results"]
    assert result["here"] == {"on_hand": 0, "reserved": 0, "available": 0, "incoming": 4}
    # Versailles received 10 and shipped 4 of them.
    assert [(o["location"].code, o["row"].sellable) for o in result["nearest"]] == [
        ("versailles-01", 6)
    ]
    assert b"on the way" in response.content


def test_lookup_by_title_is_bounded(client_a, stores, channels, django_assert_max_num_queries):
    variants = [
        VariantFactory(product__title=f"Cotton Tee {n:02d}", sku=f"TEE-{n:02d}") for n in range(25)
    ]
    for v in variants:
        stock_receive(location=stores["a"], variant=v, quantity=1)
        stock_receive(location=stores["lille"], variant=v, quantity=2)
    availability_refresh(variant_ids=[v.pk for v in variants])
    with django_assert_max_num_queries(12):
        response = client_a.get(url("stock", stores["a"]), {"q": "cotton tee"})
    results = response.context["results"]
    assert [r["variant"].sku for r in results] == [f"TEE-{n:02d}" for n in range(20)]
    assert response.context["more"] is True
    assert all(r["here"]["on_hand"] == 1 for r in results)
    assert all([o["location"].code for o in r["nearest"]] == ["lille-01"] for r in results)
    assert b"the first 20" in response.content


def test_nothing_found_says_so(client_a, stores, variant):
    response = client_a.get(url("stock", stores["a"]), {"q": "no such thing"})
    assert response.status_code == 200
    assert response.context["results"] == []
    assert b"No item matches" in response.content


def test_empty_search_shows_the_form(client_a, stores):
    response = client_a.get(url("stock", stores["a"]))
    assert response.status_code == 200
    assert b'name="q"' in response.content
    assert response.context["results"] == []


def test_too_long_search_is_a_clear_error(client_a, stores):
    response = client_a.get(url("stock", stores["a"]), {"q": "x" * 201})
    assert response.status_code == 200
    assert b"Ensure this value has at most 200 characters" in response.content
    assert response.context["results"] == []


def test_lookup_changes_nothing(client_a, stores, stocked):
    before = list(StockLevel.objects.values_list("pk", "on_hand", "reserved").order_by("pk"))
    client_a.get(url("stock", stores["a"]), {"q": "LINEN-M"})
    after = list(StockLevel.objects.values_list("pk", "on_hand", "reserved").order_by("pk"))
    assert after == before
