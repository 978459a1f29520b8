"""Recommendations: what others bought together with a subject's items, ranked, topped up with
the best sellers; the same figures from PostgreSQL's query and from the portable path used on
SQLite; each item read once within ``recommendations_kept()``."""

from decimal import Decimal

import pytest

from campaigns import rendering
from campaigns.rendering import recommendations_for, recommendations_kept
from catalog.models import Product
from inventory.services import stock_receive
from orders.services import LineInput, pos_sale_record
from tests.factories import ListingFactory, LocationFactory, ProductFactory, VariantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(channels):
    """Products A to F and X (one variant each, D two), sold at a store in these orders:
    A+C, A+C, A+D2, B+C, B+E, B+E, A+B+F, A+X; then X's product is withdrawn."""
    store = LocationFactory(code="lyon")
    v = {}
    for name in ("a", "b", "c", "d1", "d2", "e", "f", "x"):
        product = v["d1"].product if name == "d2" else ProductFactory(title=name.upper())
        v[name] = VariantFactory(sku=f"SKU-{name.upper()}", product=product)
        ListingFactory(variant=v[name], channel=channels.pos, price=Decimal("10.00"))
        stock_receive(location=store, variant=v[name], quantity=50)
    for names in (
        ("a", "c"),
        ("a", "c"),
        ("a", "d2"),
        ("b", "c"),
        ("b", "e"),
        ("b", "e"),
        ("a", "b", "f"),
        ("a", "x"),
    ):
        pos_sale_record(
            store=store,
            lines=[LineInput(v[name].sku, 1) for name in names],
            source="test",
        )
    Product.objects.filter(pk=v["x"].product_id).update(is_active=False)
    return v


def test_ranked_by_orders_with_the_items_summed_over_them(catalog):
    v = catalog
    chosen = recommendations_for(
        {
            1: {v["a"].pk},
            2: {v["a"].pk, v["b"].pk},
            3: {v["e"].pk},
            4: set(),
        }
    )
    # A went with C twice, then B, D and F once each (ties by product): X is withdrawn, and
    # D is shown as the variant those orders had.
    assert chosen[1] == [v["c"].pk, v["b"].pk, v["d2"].pk]
    # A's and B's figures added up, neither shown: C 2 + 1, E 2, F 1 + 1 (the order holding
    # both counts for each), D 1.
    assert chosen[2] == [v["c"].pk, v["e"].pk, v["f"].pk]
    # E only ever went with B: topped up with the best sellers (A 5 units, B 4, C 3).
    assert chosen[3] == [v["b"].pk, v["a"].pk, v["c"].pk]
    # Nothing to go by: the best sellers.
    assert chosen[4] == [v["a"].pk, v["b"].pk, v["c"].pk]


def test_the_portable_path_gives_the_same_figures(catalog):
    ids = {variant.pk for variant in catalog.values()}
    memo = rendering._Memo()
    rendering._read_items(memo, ids)  # PostgreSQL's query
    portable = rendering._together_portable(ids, memo.product_of)
    assert portable == memo.together
    assert memo.together[catalog["a"].pk][0] == (catalog["c"].product_id, catalog["c"].pk, 2)


def test_each_item_is_read_once_within_a_run(catalog, django_assert_num_queries):
    v = catalog
    items = {1: {v["a"].pk}, 2: {v["e"].pk}}
    with django_assert_num_queries(3):  # products, bought together, best sellers
        first = recommendations_for(items)
    with django_assert_num_queries(3):  # outside a run: read again
        assert recommendations_for(items) == first
    with recommendations_kept():
        with django_assert_num_queries(3):
            assert recommendations_for(items) == first
        with django_assert_num_queries(0):
            assert recommendations_for(items) == first
        with django_assert_num_queries(2):  # only the new item
            recommendations_for({3: {v["b"].pk}})


def test_a_long_run_reads_its_items_again(catalog, monkeypatch, django_assert_num_queries):
    items = {1: {catalog["a"].pk}, 2: {catalog["e"].pk}}
    with recommendations_kept():
        first = recommendations_for(items)
        with django_assert_num_queries(1):  # the best sellers, asked for more of them
            recommendations_for(items, limit=4)
        monkeypatch.setattr(rendering, "MEMO_SECONDS", -1)
        with django_assert_num_queries(3):
            assert recommendations_for(items) == first
