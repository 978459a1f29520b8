"""Channel feeds: content, fields, filtering, files, the task and the command."""

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.feeds import DEFAULT_FIELDS, feed_chunks, feed_content_type, feed_rows
from catalog.models import ChannelFeed, FeedFormat
from catalog.services import channel_feed_generate, channel_feed_generate_all
from catalog.services.feeds import channel_feed_get
from catalog.tasks import generate_feeds
from omni.exceptions import ValidationFailed
from omni.models import Channel, OutboxEvent
from tests.factories import (
    BrandFactory,
    CategoryFactory,
    ListingFactory,
    ProductFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
GTIN_A = "4006381333931"
HEADER = "sku,gtin,title,brand,category,price,currency,available\r\n"
SALES = ["app", "marketplace", "social-shop", "store", "web"]


@pytest.fixture(autouse=True)
def _frozen(monkeypatch):
    """A fixed "now", so that availability windows and generated_at are exact."""
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOW)


@pytest.fixture
def web():
    return Channel.objects.get(code="web")


@pytest.fixture
def catalog(web):
    """Three listings in the web feed, three left out of it, one on another channel."""
    tee = ProductFactory(
        handle="tee",
        title="Classic Tee",
        description="Soft cotton.",
        brand=BrandFactory(name="Northwind"),
        category=CategoryFactory(name="Tops", path="Apparel > Tops"),
    )
    mug = ProductFactory(
        handle="mug",
        title="Mug",
        description="",
        brand=BrandFactory(name="Kestrel"),
        category=CategoryFactory(name="Kitchen", path="Home > Kitchen"),
    )

    def listing(sku, product, **kwargs):
        variant = VariantFactory(sku=sku, product=product, gtin=kwargs.pop("gtin", None))
        return ListingFactory(variant=variant, channel=web, currency="EUR", **kwargs)

    listing("TEE-M", tee, gtin=GTIN_A, price=Decimal("19.99"))
    listing("TEE-S", tee, price=Decimal("17.50"), title="Tee S (web)", description="Web text.")
    listing(
        "MUG-1",
        mug,
        price=Decimal("8.00"),
        available_from=NOW - DAY,
        available_until=NOW + DAY,
    )
    listing("HIDDEN-1", mug, price=Decimal("1.00"), is_published=False)
    listing("LATER-1", mug, price=Decimal("2.00"), available_from=NOW + DAY)
    listing("GONE-1", mug, price=Decimal("3.00"), available_until=NOW - DAY)
    ListingFactory(variant__sku="APP-ONLY", channel=Channel.objects.get(code="app"))
    return web


def _feed(channel, **kwargs) -> ChannelFeed:
    feed = channel_feed_get(channel=channel)
    for key, value in kwargs.items():
        setattr(feed, key, value)
    feed.save()
    return feed


def _text(feed) -> str:
    return "".join(feed_chunks(feed))


# --- Content ----------------------------------------------------------------------------------


def test_csv_feed_with_the_default_fields(catalog):
    feed = _feed(catalog)
    assert feed.format == FeedFormat.CSV
    assert feed.published_only is True
    assert _text(feed) == (
        HEADER + "MUG-1,,Mug,Kestrel,Home > Kitchen,8.00,EUR,yes\r\n"
        "TEE-M,4006381333931,Classic Tee,Northwind,Apparel > Tops,19.99,EUR,yes\r\n"
        "TEE-S,,Tee S (web),Northwind,Apparel > Tops,17.50,EUR,yes\r\n"
    )
    assert feed_content_type(feed) == "text/csv; charset=utf-8"


def test_json_feed_with_the_default_fields(catalog):
    feed = _feed(catalog, format=FeedFormat.JSON)
    text = _text(feed)
    assert text == (
        '{"channel": "web", "generated_at": "2030-06-01T12:00:00Z", "items": [\n'
        '{"sku": "MUG-1", "gtin": null, "title": "Mug", "brand": "Kestrel", '
        '"category": "Home > Kitchen", "price": "8.00", "currency": "EUR", "available": true},\n'
        '{"sku": "TEE-M", "gtin": "4006381333931", "title": "Classic Tee", "brand": "Northwind", '
        '"category": "Apparel > Tops", "price": "19.99", "currency": "EUR", "available": true},\n'
        '{"sku": "TEE-S", "gtin": null, "title": "Tee S (web)", "brand": "Northwind", '
        '"category": "Apparel > Tops", "price": "17.50", "currency": "EUR", "available": true}\n'
        "]}\n"
    )
    data = json.loads(text)
    assert [item["sku"] for item in data["items"]] == ["MUG-1", "TEE-M", "TEE-S"]
    assert feed_content_type(feed) == "application/json"


def test_json_feed_of_an_empty_channel_is_valid_json(web):
    feed = _feed(web, format=FeedFormat.JSON)
    assert json.loads(_text(feed)) == {
        "channel": "web",
        "generated_at": "2030-06-01T12:00:00Z",
        "items": [],
    }


def test_csv_feed_with_configured_fields_in_their_order(catalog):
    feed = _feed(
        catalog,
        fields=[
            "price",
            "sku",
            "handle",
            "title",
            "description",
            "options",
            "published",
            "available_from",
            "available_until",
        ],
    )
    assert _text(feed) == (
        "price,sku,handle,title,description,options,published,available_from,available_until\r\n"
        "8.00,MUG-1,mug,Mug,,size=M,yes,2030-05-31T12:00:00+00:00,2030-06-02T12:00:00+00:00\r\n"
        "19.99,TEE-M,tee,Classic Tee,Soft cotton.,size=M,yes,,\r\n"
        "17.50,TEE-S,tee,Tee S (web),Web text.,size=M,yes,,\r\n"
    )


def test_json_feed_with_configured_fields(catalog):
    feed = _feed(
        catalog,
        format=FeedFormat.JSON,
        fields=["options", "sku", "available_until", "updated_at"],
    )
    items = json.loads(_text(feed))["items"]
    assert items[0] == {
        "options": {"size": "M"},
        "sku": "MUG-1",
        "available_until": "2030-06-02T12:00:00Z",
        "updated_at": "2030-06-01T12:00:00Z",
    }
    assert [list(item) for item in items] == [
        ["options", "sku", "available_until", "updated_at"]
    ] * 3


def test_feed_with_every_listing_flags_availability(catalog):
    feed = _feed(catalog, published_only=False, fields=["sku", "published", "available"])
    assert _text(feed) == (
        "sku,published,available\r\n"
        "GONE-1,yes,no\r\n"
        "HIDDEN-1,no,no\r\n"
        "LATER-1,yes,no\r\n"
        "MUG-1,yes,yes\r\n"
        "TEE-M,yes,yes\r\n"
        "TEE-S,yes,yes\r\n"
    )


def test_availability_window_starts_inclusive_and_ends_exclusive(web):
    ListingFactory(variant__sku="STARTS-NOW", channel=web, available_from=NOW)
    ListingFactory(variant__sku="ENDS-NOW", channel=web, available_until=NOW)
    ListingFactory(
        variant__sku="ENDS-SOON", channel=web, available_until=NOW + timedelta(microseconds=1)
    )
    rows = list(feed_rows(_feed(web, fields=["sku", "available"])))
    assert rows == [
        {"sku": "ENDS-SOON", "available": True},
        {"sku": "STARTS-NOW", "available": True},
    ]
    everything = list(feed_rows(_feed(web, fields=["sku", "available"], published_only=False)))
    assert everything == [
        {"sku": "ENDS-NOW", "available": False},
        {"sku": "ENDS-SOON", "available": True},
        {"sku": "STARTS-NOW", "available": True},
    ]


def test_default_fields():
    assert DEFAULT_FIELDS == [
        "sku",
        "gtin",
        "title",
        "brand",
        "category",
        "price",
        "currency",
        "available",
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["sku", "bogus", "colour"], "Unknown feed fields: bogus, colour."),
        (["sku", "price", "sku"], "Feed fields listed twice: sku."),
        (["sku", {"name": "price"}], "Feed fields must be a list of field names."),
        ("sku", "Feed fields must be a list of field names."),
    ],
)
def test_bad_feed_fields_are_refused_before_the_first_chunk(catalog, fields, message):
    feed = _feed(catalog, fields=fields)
    with pytest.raises(ValidationFailed) as info:
        feed_chunks(feed)  # not iterated: refused at once, before a response starts
    assert info.value.message == message
    assert list(info.value.extra) == ["fields"]


# --- Generating files -------------------------------------------------------------------------


def test_channel_feed_generate_writes_the_file_and_records_it(catalog, settings):
    feed = channel_feed_generate(channel=catalog)

    target = Path(settings.OMNI_FEEDS_DIR) / "web.csv"
    assert target.read_bytes().decode("utf-8") == _text(feed)
    assert target.read_bytes().decode("utf-8").count("\r\n") == 4
    feed = ChannelFeed.objects.get(channel=catalog)
    assert (feed.last_row_count, feed.last_file, feed.last_generated_at) == (3, str(target), NOW)
    event = OutboxEvent.objects.get()
    assert (event.type, event.subject_type, event.subject_id) == (
        "catalog.feed.generated",
        "channel",
        "web",
    )
    assert event.payload == {"file": str(target), "rows": 3, "format": "csv"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["web.csv"]


def test_channel_feed_generate_json(catalog, settings):
    _feed(catalog, format=FeedFormat.JSON, published_only=False)
    feed = channel_feed_generate(channel=catalog)
    target = Path(settings.OMNI_FEEDS_DIR) / "web.json"
    assert len(json.loads(target.read_text(encoding="utf-8"))["items"]) == 6
    assert (feed.last_row_count, feed.last_file) == (6, str(target))


@pytest.mark.parametrize("format", [FeedFormat.CSV, FeedFormat.JSON])
def test_channel_feed_generate_of_an_empty_channel_counts_zero(web, format):
    _feed(web, format=format)
    assert channel_feed_generate(channel=web).last_row_count == 0


def test_regenerating_replaces_the_file(catalog, settings, web):
    channel_feed_generate(channel=web)
    ListingFactory(variant__sku="NEW-1", channel=web)
    feed = channel_feed_generate(channel=web)
    assert feed.last_row_count == 4
    text = (Path(settings.OMNI_FEEDS_DIR) / "web.csv").read_bytes().decode("utf-8")
    assert text.splitlines()[2].startswith("NEW-1,")
    assert OutboxEvent.objects.filter(type="catalog.feed.generated").count() == 2


def test_channel_feed_generate_with_unknown_fields_writes_nothing(catalog, settings):
    _feed(catalog, fields=["sku", "bogus"])
    with pytest.raises(ValidationFailed) as info:
        channel_feed_generate(channel=catalog)
    assert info.value.message == "Unknown feed fields: bogus."
    feed = ChannelFeed.objects.get(channel=catalog)
    assert (feed.last_row_count, feed.last_file, feed.last_generated_at) == (None, "", None)
    assert not Path(settings.OMNI_FEEDS_DIR).exists() or not any(
        Path(settings.OMNI_FEEDS_DIR).iterdir()
    )
    assert OutboxEvent.objects.count() == 0


def test_a_failed_write_keeps_the_previous_file(catalog, settings, monkeypatch):
    channel_feed_generate(channel=catalog)
    target = Path(settings.OMNI_FEEDS_DIR) / "web.csv"
    before = target.read_bytes()

    def broken(feed):
        yield "sku\r\n"
        raise RuntimeError("database went away")

    monkeypatch.setattr("catalog.services.feeds.feed_chunks", broken)
    with pytest.raises(RuntimeError):
        channel_feed_generate(channel=catalog)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["web.csv"]
    assert ChannelFeed.objects.get(channel=catalog).last_row_count == 3
    assert OutboxEvent.objects.count() == 1


@pytest.mark.parametrize("code", ["email", "sms"])
def test_a_messaging_channel_has_no_feed(code, settings):
    with pytest.raises(ValidationFailed) as info:
        channel_feed_generate(channel=Channel.objects.get(code=code))
    assert info.value.code == "not_a_sales_channel"
    assert info.value.extra == {"channel": [f"{code} is not a sales channel."]}
    assert ChannelFeed.objects.count() == 0
    assert not Path(settings.OMNI_FEEDS_DIR).exists()


def test_channel_feed_generate_all_writes_every_active_sales_channel(catalog, settings):
    Channel.objects.filter(code="social-shop").update(is_active=False)
    feeds = channel_feed_generate_all()
    assert [f.channel.code for f in feeds] == ["app", "marketplace", "store", "web"]
    assert [f.last_row_count for f in feeds] == [1, 0, 0, 3]
    assert sorted(p.name for p in Path(settings.OMNI_FEEDS_DIR).iterdir()) == [
        "app.csv",
        "marketplace.csv",
        "store.csv",
        "web.csv",
    ]
    assert ChannelFeed.objects.count() == 4
    assert OutboxEvent.objects.filter(type="catalog.feed.generated").count() == 4


def test_channel_feed_generate_all_skips_a_channel_with_bad_settings(catalog, settings, caplog):
    _feed(Channel.objects.get(code="app"), fields=["sku", "bogus"])
    feeds = channel_feed_generate_all()
    assert [f.channel.code for f in feeds] == ["marketplace", "social-shop", "store", "web"]
    assert not (Path(settings.OMNI_FEEDS_DIR) / "app.csv").exists()
    assert ChannelFeed.objects.get(channel__code="app").last_generated_at is None
    assert [r.getMessage() for r in caplog.records if r.name == "catalog.services.feeds"] == [
        "The feed of channel app was not generated: Unknown feed fields: bogus."
    ]
    assert generate_feeds() == 4


def test_generate_feeds_task(catalog, settings):
    assert generate_feeds.name == "catalog.generate_feeds"
    assert generate_feeds() == 5
    assert sorted(p.name for p in Path(settings.OMNI_FEEDS_DIR).iterdir()) == [
        f"{code}.csv" for code in SALES
    ]
    assert ChannelFeed.objects.get(channel__code="web").last_row_count == 3
    assert generate_feeds.apply().get() == 5
    assert OutboxEvent.objects.filter(type="catalog.feed.generated").count() == 10


# --- Command ----------------------------------------------------------------------------------


def test_channel_feed_command_for_one_channel(catalog, settings):
    out, err = io.StringIO(), io.StringIO()
    call_command("channel_feed", "web", stdout=out, stderr=err)
    target = Path(settings.OMNI_FEEDS_DIR) / "web.csv"
    assert out.getvalue() == f"web: 3 rows -> {target}\n"
    assert err.getvalue() == "[1/1] web...\n"
    assert target.exists()


def test_channel_feed_command_for_all(catalog, settings):
    out = io.StringIO()
    call_command("channel_feed", "--all", stdout=out, stderr=io.StringIO())
    folder = Path(settings.OMNI_FEEDS_DIR)
    assert out.getvalue().splitlines() == [
        f"app: 1 rows -> {folder / 'app.csv'}",
        f"marketplace: 0 rows -> {folder / 'marketplace.csv'}",
        f"social-shop: 0 rows -> {folder / 'social-shop.csv'}",
        f"store: 0 rows -> {folder / 'store.csv'}",
        f"web: 3 rows -> {folder / 'web.csv'}",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["web", "nope", "other"], "Unknown channel(s): nope, other"),
        ([], "Give channel codes or --all."),
        (["email"], "Feeds not written for: email"),
    ],
)
def test_channel_feed_command_refuses(args, message, settings):
    with pytest.raises(CommandError) as info:
        call_command("channel_feed", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert str(info.value) == message
    assert not Path(settings.OMNI_FEEDS_DIR).exists()


def test_channel_feed_command_with_bad_fields(web, settings):
    _feed(web, fields=["bogus"])
    err = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("channel_feed", "web", stdout=io.StringIO(), stderr=err)
    assert str(info.value) == "Feeds not written for: web"
    assert "web: Unknown feed fields: bogus." in err.getvalue()


def test_channel_feed_command_all_goes_on_past_a_bad_channel(catalog, web, settings):
    _feed(web, fields=["bogus"])
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("channel_feed", "--all", stdout=out, stderr=err)
    folder = Path(settings.OMNI_FEEDS_DIR)
    assert str(info.value) == "Feeds not written for: web"
    assert "web: Unknown feed fields: bogus." in err.getvalue()
    assert sorted(p.name for p in folder.iterdir()) == [
        "app.csv",
        "marketplace.csv",
        "social-shop.csv",
        "store.csv",
    ]
    assert len(out.getvalue().splitlines()) == 4
