import pytest
from django.core.management import call_command

from catalog.models import Category, ChannelListing, Product, Variant
from catalog.services import category_ensure_path, category_save, listing_upsert
from omni.exceptions import ValidationFailed
from omni.models import Channel
from tests.factories import VariantFactory


@pytest.mark.django_db
def test_renaming_a_category_renames_its_whole_subtree():
    tops = category_ensure_path(path="Apparel > Tops > Shirts")
    apparel = Category.objects.get(path="Apparel")

    category_save(category=apparel, name="Clothing", parent=None)

    assert sorted(Category.objects.values_list("path", flat=True)) == [
        "Clothing",
        "Clothing > Tops",
        "Clothing > Tops > Shirts",
    ]
    tops.refresh_from_db()
    assert tops.path == "Clothing > Tops > Shirts"


@pytest.mark.django_db
def test_moving_a_category_under_its_own_subtree_is_refused_and_changes_nothing():
    category_ensure_path(path="Apparel > Tops")
    apparel = Category.objects.get(path="Apparel")
    tops = Category.objects.get(path="Apparel > Tops")

    with pytest.raises(ValidationFailed) as exc:
        category_save(category=apparel, name="Apparel", parent=tops)

    assert exc.value.code == "category_cycle"
    assert sorted(Category.objects.values_list("path", flat=True)) == ["Apparel", "Apparel > Tops"]
    assert Category.objects.get(path="Apparel").parent_id is None


@pytest.mark.django_db
def test_a_category_name_may_not_contain_the_path_separator():
    with pytest.raises(ValidationFailed) as exc:
        category_save(name="Tops > Shirts", parent=None)
    assert "name" in exc.value.extra
    assert Category.objects.count() == 0


@pytest.mark.django_db
def test_a_listing_change_marks_its_product_changed():
    variant = VariantFactory()
    Product.objects.filter(pk=variant.product_id).update(updated_at="2020-01-01T00:00:00Z")

    listing_upsert(variant=variant, channel=Channel.objects.get(code="web"), price="9.00")

    product = Product.objects.get(pk=variant.product_id)
    assert product.updated_at == ChannelListing.objects.get(variant=variant).updated_at


@pytest.mark.django_db
def test_load_demo_force_adds_a_second_batch_without_clashing():
    call_command("load_demo", products=12)
    first = Variant.objects.count()
    call_command("load_demo", products=12)  # skipped: products exist
    assert Variant.objects.count() == first

    call_command("load_demo", products=12, force=True)

    assert Product.objects.count() == 24
    assert Variant.objects.count() > first
    assert ChannelListing.objects.count() == Variant.objects.count() * 5


@pytest.mark.django_db
def test_admin_rename_goes_through_the_service_and_a_cycle_shows_an_error(client, staff_user):
    category_ensure_path(path="Apparel > Tops")
    apparel = Category.objects.get(path="Apparel")
    tops = Category.objects.get(path="Apparel > Tops")
    client.force_login(staff_user)
    url = f"/admin/catalog/category/{apparel.pk}/change/"

    response = client.post(url, {"name": "Clothing", "parent": ""})
    assert response.status_code == 302
    assert Category.objects.get(pk=tops.pk).path == "Clothing > Tops"

    response = client.post(url, {"name": "Clothing", "parent": str(tops.pk)}, follow=True)
    assert "Nothing was saved. A category cannot be moved under itself" in response.content.decode()
    assert Category.objects.get(pk=apparel.pk).parent_id is None
