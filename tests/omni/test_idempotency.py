"""Idempotency keys on POST: replay, reuse with another body, in-progress, expiry, principals.

The in-progress and race tests send real concurrent HTTP requests to a threaded live server
against PostgreSQL, so each request runs in its own connection and its own transactions. They
use no seeded rows (channels): a transactional test starts from whatever an earlier one left.
"""

import json
import threading
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Brand, Product, Variant
from catalog.services import brand_get_or_create, category_ensure_path
from omni.exceptions import Conflict
from omni.models import ApiClientAccess, IdempotencyKey, IdempotencyStatus, OutboxEvent
from omni.services import api_client_create, idempotency_purge_expired
from omni.tasks import purge_idempotency_keys
from tests.omni import urls_slow

PRODUCTS = "/api/v1/catalog/products/"
VARIANTS = "/api/v1/catalog/variants/"
HOODIE = {
    "handle": "hoodie",
    "title": "Hoodie",
    "brand": "Northwind",
    "category": "Apparel > Hoodies",
    "variants": [
        {"sku": "HOOD-S", "base_price": "49.90"},
        {"sku": "HOOD-M", "base_price": "49.90"},
    ],
}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    return body


def post(api, url, payload, key):
    return api.post(url, payload, format="json", HTTP_IDEMPOTENCY_KEY=key)


# --- Replay, reuse, release (in-process) ----------------------------------------------------


def test_repeat_returns_the_first_response_without_doing_the_work_again(writer):
    first = post(writer, PRODUCTS, HOODIE, "key-1")
    again = post(writer, PRODUCTS, HOODIE, "key-1")

    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Product.objects.count() == 1
    assert Variant.objects.count() == 2
    assert OutboxEvent.objects.filter(type="catalog.product.created").count() == 1
    record = IdempotencyKey.objects.get()
    assert (record.key, record.method, record.path, record.status, record.response_status) == (
        "key-1",
        "POST",
        PRODUCTS,
        IdempotencyStatus.COMPLETED,
        201,
    )
    assert record.principal == f"client:{writer.api_client.pk}"
    assert record.expires_at - record.created_at == timedelta(hours=24)


def test_without_a_key_each_post_runs(writer):
    first = writer.post(PRODUCTS, {**HOODIE, "variants": []}, format="json")
    again = writer.post(PRODUCTS, {**HOODIE, "variants": []}, format="json")

    assert first.status_code == 201
    body = assert_error(again, 400, "validation_error")
    assert body["details"] == {"handle": ["Product with this Handle already exists."]}
    assert IdempotencyKey.objects.count() == 0


def test_same_key_with_a_different_body_is_422(writer):
    assert post(writer, PRODUCTS, HOODIE, "key-1").status_code == 201

    response = post(writer, PRODUCTS, {**HOODIE, "handle": "other-hoodie"}, "key-1")

    body = assert_error(response, 422, "idempotency_key_reused")
    assert body["message"] == "This Idempotency-Key was already used for a different request."
    assert body["details"] == {"key": "key-1"}
    assert list(Product.objects.values_list("handle", flat=True)) == ["hoodie"]


def test_repeat_without_the_trailing_slash_is_the_same_request(writer):
    first = post(writer, PRODUCTS, HOODIE, "key-1")
    again = post(writer, PRODUCTS.rstrip("/"), HOODIE, "key-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert Product.objects.count() == 1


def test_same_key_on_another_endpoint_is_422(writer):
    assert post(writer, PRODUCTS, HOODIE, "key-1").status_code == 201

    response = post(
        writer, VARIANTS, {"product": "hoodie", "sku": "HOOD-L", "base_price": "1"}, "key-1"
    )

    assert_error(response, 422, "idempotency_key_reused")
    assert Variant.objects.count() == 2


def test_a_refused_request_is_replayed_too(writer):
    bad = {**HOODIE, "brand": ""}

    first = post(writer, PRODUCTS, bad, "key-1")
    again = post(writer, PRODUCTS, bad, "key-1")

    assert_error(first, 400, "validation_error")
    assert_error(again, 400, "validation_error")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Product.objects.count() == 0


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_key_must_be_1_to_255_characters(writer, key):
    response = post(writer, PRODUCTS, HOODIE, key)

    body = assert_error(response, 400, "validation_error")
    assert body["details"] == {"Idempotency-Key": ["Must be 1 to 255 characters."]}
    assert Product.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def test_key_of_255_characters_is_accepted(writer):
    assert post(writer, PRODUCTS, HOODIE, "k" * 255).status_code == 201
    assert IdempotencyKey.objects.get().key == "k" * 255


def test_expired_key_may_be_reused(writer):
    assert post(writer, PRODUCTS, HOODIE, "key-1").status_code == 201
    past = timezone.now() - timedelta(hours=24, seconds=1)
    IdempotencyKey.objects.update(created_at=past, expires_at=past + timedelta(hours=24))

    response = post(writer, PRODUCTS, {**HOODIE, "handle": "hoodie-2", "variants": []}, "key-1")

    assert response.status_code == 201, response.content
    assert "Idempotent-Replayed" not in response
    assert sorted(Product.objects.values_list("handle", flat=True)) == ["hoodie", "hoodie-2"]
    record = IdempotencyKey.objects.get()
    assert record.expires_at > timezone.now() + timedelta(hours=23)


def test_key_not_yet_expired_is_still_replayed(writer):
    first = post(writer, PRODUCTS, HOODIE, "key-1")
    almost = timezone.now() - timedelta(hours=23, minutes=59)
    IdempotencyKey.objects.update(created_at=almost, expires_at=almost + timedelta(hours=24))

    again = post(writer, PRODUCTS, HOODIE, "key-1")

    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Product.objects.count() == 1


def test_server_error_releases_the_key(writer, monkeypatch):
    from catalog.api import views

    real_create = views.product_create
    calls = []

    def failing_once(**kwargs):
        calls.append(kwargs["handle"])
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real_create(**kwargs)

    monkeypatch.setattr(views, "product_create", failing_once)

    failed = post(writer, PRODUCTS, HOODIE, "key-1")

    assert_error(failed, 500, "server_error")
    assert IdempotencyKey.objects.count() == 0
    assert Product.objects.count() == 0

    retried = post(writer, PRODUCTS, HOODIE, "key-1")

    assert retried.status_code == 201, retried.content
    assert "Idempotent-Replayed" not in retried
    assert calls == ["hoodie", "hoodie"]
    assert Product.objects.count() == 1
    assert IdempotencyKey.objects.get().status == IdempotencyStatus.COMPLETED


def test_conflict_releases_the_key(writer, monkeypatch):
    from catalog.api import views

    real_create = views.product_create
    calls = []

    def clashing_once(**kwargs):
        calls.append(kwargs["handle"])
        if len(calls) == 1:
            raise Conflict("Another request changed this product.", code="conflict")
        return real_create(**kwargs)

    monkeypatch.setattr(views, "product_create", clashing_once)

    assert_error(post(writer, PRODUCTS, HOODIE, "key-1"), 409, "conflict")
    assert IdempotencyKey.objects.count() == 0

    retried = post(writer, PRODUCTS, HOODIE, "key-1")

    assert retried.status_code == 201, retried.content
    assert calls == ["hoodie", "hoodie"]
    assert Product.objects.count() == 1


def test_abandoned_in_progress_key_may_be_reclaimed(writer):
    now = timezone.now()
    IdempotencyKey.objects.create(
        principal=f"client:{writer.api_client.pk}",
        key="key-1",
        method="POST",
        path=PRODUCTS,
        fingerprint="0" * 64,
        status=IdempotencyStatus.IN_PROGRESS,
        created_at=now - timedelta(minutes=10),
        locked_until=now - timedelta(minutes=5),
        expires_at=now + timedelta(hours=23),
    )

    response = post(writer, PRODUCTS, HOODIE, "key-1")

    assert response.status_code == 201, response.content
    assert Product.objects.count() == 1
    assert IdempotencyKey.objects.get().status == IdempotencyStatus.COMPLETED


def test_in_progress_key_is_409(writer):
    first = post(writer, PRODUCTS, HOODIE, "key-1")
    assert first.status_code == 201
    IdempotencyKey.objects.update(status=IdempotencyStatus.IN_PROGRESS, response_status=None)

    response = post(writer, PRODUCTS, HOODIE, "key-1")

    body = assert_error(response, 409, "idempotency_in_progress")
    assert body["details"] == {"key": "key-1"}
    assert Product.objects.count() == 1


def test_keys_are_per_principal(writer, staff_api):
    _other, token = api_client_create(name="second-integrator", access=ApiClientAccess.WRITE)
    from rest_framework.test import APIClient

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    mine = post(writer, PRODUCTS, HOODIE, "shared-key")
    theirs = post(
        other, PRODUCTS, {**HOODIE, "handle": "their-hoodie", "variants": []}, "shared-key"
    )
    staff = post(
        staff_api, PRODUCTS, {**HOODIE, "handle": "staff-hoodie", "variants": []}, "shared-key"
    )

    assert (mine.status_code, theirs.status_code, staff.status_code) == (201, 201, 201)
    assert "Idempotent-Replayed" not in theirs and "Idempotent-Replayed" not in staff
    assert sorted(Product.objects.values_list("handle", flat=True)) == [
        "hoodie",
        "staff-hoodie",
        "their-hoodie",
    ]
    assert IdempotencyKey.objects.filter(key="shared-key").count() == 3


def test_unauthenticated_or_refused_posts_do_not_claim_keys(api, reader):
    assert post(api, PRODUCTS, HOODIE, "key-1").status_code == 401
    assert post(reader, PRODUCTS, HOODIE, "key-1").status_code == 403

    assert IdempotencyKey.objects.count() == 0


def test_key_is_ignored_on_patch(writer):
    assert writer.post(PRODUCTS, {**HOODIE, "variants": []}, format="json").status_code == 201

    first = writer.patch(f"{PRODUCTS}hoodie/", {"title": "A"}, HTTP_IDEMPOTENCY_KEY="key-1")
    second = writer.patch(f"{PRODUCTS}hoodie/", {"title": "B"}, HTTP_IDEMPOTENCY_KEY="key-1")

    assert (first.status_code, second.status_code) == (200, 200)
    assert Product.objects.get().title == "B"
    assert IdempotencyKey.objects.count() == 0


# --- Purge ----------------------------------------------------------------------------------


def _key(key: str, expires_in: timedelta) -> IdempotencyKey:
    now = timezone.now()
    return IdempotencyKey.objects.create(
        principal="client:1",
        key=key,
        method="POST",
        path=PRODUCTS,
        fingerprint="0" * 64,
        status=IdempotencyStatus.COMPLETED,
        response_status=201,
        response_body={},
        created_at=now + expires_in - timedelta(hours=24),
        locked_until=now,
        expires_at=now + expires_in,
    )


def test_purge_task_deletes_expired_keys_only(db):
    _key("old", -timedelta(minutes=1))
    _key("older", -timedelta(days=3))
    _key("fresh", timedelta(hours=1))

    result = purge_idempotency_keys.apply()

    assert purge_idempotency_keys.name == "omni.purge_idempotency_keys"
    assert result.get() == 2
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    assert idempotency_purge_expired() == 0


# --- Real concurrent requests ---------------------------------------------------------------


def _http_post(url: str, payload: dict, *, token: str, key: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def _in_thread(results: dict, name: str, *args, **kwargs) -> threading.Thread:
    def run():
        results[name] = _http_post(*args, **kwargs)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


@pytest.mark.urls("tests.omni.urls_slow")
@pytest.mark.django_db(transaction=True)
def test_same_key_while_the_first_request_runs_is_409(live_server):
    _client, token = api_client_create(name="pos", access=ApiClientAccess.WRITE)
    url = f"{live_server.url}/api/v1/test/slow-work/"
    urls_slow.started.clear()
    urls_slow.release.clear()
    results = {}

    first = _in_thread(results, "first", url, {"ref": "batch-7"}, token=token, key="slow-1")
    assert urls_slow.started.wait(timeout=10), "the first request never reached the view"
    second = _in_thread(results, "second", url, {"ref": "batch-7"}, token=token, key="slow-1")
    second.join(timeout=10)
    assert "second" in results, "the second request waited for the first"
    urls_slow.release.set()
    first.join(timeout=10)

    status, headers, body = results["first"]
    assert status == 201
    assert body["ref"] == "batch-7"
    status, headers, error = results["second"]
    assert status == 409
    assert error == {
        "code": "idempotency_in_progress",
        "message": "A request with this Idempotency-Key is still being processed; retry later.",
        "details": {"key": "slow-1"},
    }
    assert OutboxEvent.objects.filter(type="test.slow_work").count() == 1

    status, headers, replay = _http_post(url, {"ref": "batch-7"}, token=token, key="slow-1")

    assert (status, headers["Idempotent-Replayed"], replay) == (201, "true", body)
    assert OutboxEvent.objects.filter(type="test.slow_work").count() == 1
    assert IdempotencyKey.objects.get().status == IdempotencyStatus.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_creates_make_one_product(live_server):
    _client, token = api_client_create(name="pos", access=ApiClientAccess.WRITE)
    url = f"{live_server.url}{PRODUCTS}"
    barrier = threading.Barrier(4)
    results = {}

    def run(name):
        barrier.wait(timeout=10)
        results[name] = _http_post(url, HOODIE, token=token, key="create-hoodie")

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 4
    created = [r for r in results.values() if r[0] == 201 and "Idempotent-Replayed" not in r[1]]
    replayed = [r for r in results.values() if r[0] == 201 and "Idempotent-Replayed" in r[1]]
    busy = [r for r in results.values() if r[0] == 409]
    assert len(created) == 1
    assert len(created) + len(replayed) + len(busy) == 4
    assert all(r[2] == created[0][2] for r in replayed)
    assert all(r[2]["code"] == "idempotency_in_progress" for r in busy)
    assert Product.objects.count() == 1
    assert Variant.objects.count() == 2
    assert Brand.objects.count() == 1
    assert OutboxEvent.objects.filter(type="catalog.product.created").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_without_a_key_never_fail_with_500(live_server):
    _client, token = api_client_create(name="pos", access=ApiClientAccess.WRITE)
    # With the brand and category in place the requests do not queue on creating them.
    brand_get_or_create(name=HOODIE["brand"])
    category_ensure_path(path=HOODIE["category"])
    url = f"{live_server.url}{PRODUCTS}"
    barrier = threading.Barrier(4)
    results = {}

    def run(name):
        barrier.wait(timeout=10)
        request = urllib.request.Request(
            url,
            data=json.dumps(HOODIE).encode(),
            method="POST",
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                results[name] = (response.status, json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            results[name] = (exc.code, json.loads(exc.read()))

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    statuses = sorted(status for status, _body in results.values())
    assert statuses[0] == 201 and statuses.count(201) == 1, results
    losers = [body for status, body in results.values() if status != 201]
    assert all(
        (status, body["code"]) in {(400, "validation_error"), (409, "conflict")}
        for status, body in results.values()
        if status != 201
    ), results
    assert len(losers) == 3
    assert Product.objects.count() == 1
    assert Variant.objects.count() == 2
