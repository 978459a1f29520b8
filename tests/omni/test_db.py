from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Variant
from omni.db import PreparedQuery
from tests.factories import VariantFactory

pytestmark = pytest.mark.django_db


def test_prepared_query_compiles_once_and_swaps_parameters():
    VariantFactory(sku="A-1", option_values={"size": "S"}, base_price=Decimal("5.00"))
    VariantFactory(sku="B-2", option_values={"size": "L"}, base_price=Decimal("7.50"))
    builds = []

    def build(sku):
        builds.append(sku)
        return Variant.objects.filter(sku=sku).values_list("sku", "option_values", "base_price")

    query = PreparedQuery(build)

    with CaptureQueriesContext(connection) as captured:
        first = query.rows("A-1")
        second = query.rows("B-2")
        missing = query.rows("NOPE")

    # JSON and decimal columns come back converted, exactly as the ORM returns them.
    assert first == [("A-1", {"size": "S"}, Decimal("5.00"))]
    assert second == [("B-2", {"size": "L"}, Decimal("7.50"))]
    assert missing == []
    assert len(builds) == 1
    # Prepared on the server once, then executed with each parameter: no planning per call.
    statements = [q["sql"].split(" ", 2)[:2] for q in captured.captured_queries]
    name = statements[0][1]
    assert statements == [["PREPARE", name], ["EXECUTE", name]] * 1 + [["EXECUTE", name]] * 2
    assert first == list(
        Variant.objects.filter(sku="A-1").values_list("sku", "option_values", "base_price")
    )


def test_prepared_query_takes_the_parameters_it_was_built_with():
    query = PreparedQuery(lambda sku: Variant.objects.filter(sku=sku).values_list("sku"))
    query.rows("X")
    with pytest.raises(ValueError):
        query.rows("X", "Y")


@pytest.mark.django_db(transaction=True)
def test_prepared_query_prepares_again_on_a_new_connection():
    VariantFactory(sku="C-3")
    query = PreparedQuery(lambda sku: Variant.objects.filter(sku=sku).values_list("sku"))
    assert query.rows("C-3") == [("C-3",)]

    connection.close()  # the server forgets prepared statements with the session

    with CaptureQueriesContext(connection) as captured:
        assert query.rows("C-3") == [("C-3",)]
    assert [q["sql"].split(" ", 1)[0] for q in captured.captured_queries] == [
        "PREPARE",
        "EXECUTE",
    ]


def test_bulk_update_values_writes_each_row_its_values_in_one_statement_per_batch():
    from omni.db import bulk_update_values

    variants = [VariantFactory(base_price=Decimal("1.00")) for _ in range(5)]
    untouched = VariantFactory(base_price=Decimal("9.99"), option_values={"size": "XL"})
    for n, variant in enumerate(variants):
        variant.base_price = Decimal(f"{n + 2}.25")
        variant.option_values = {"size": f"S{n}", "quote": "it's"}

    with CaptureQueriesContext(connection) as captured:
        written = bulk_update_values(
            Variant, variants, ["base_price", "option_values"], batch_size=2
        )

    assert written == 5
    assert len(captured) == 3  # batches of 2, 2 and 1
    assert all(q["sql"].startswith('UPDATE "catalog_variant" AS t') for q in captured)
    for n, variant in enumerate(variants):
        variant.refresh_from_db()
        assert variant.base_price == Decimal(f"{n + 2}.25")
        assert variant.option_values == {"size": f"S{n}", "quote": "it's"}
    untouched.refresh_from_db()
    assert (untouched.base_price, untouched.option_values) == (Decimal("9.99"), {"size": "XL"})
    assert bulk_update_values(Variant, [], ["base_price"]) == 0
