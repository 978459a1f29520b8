"""The per-connection API token cache: used by read views, and revocation stays immediate.

The revocation tests run the API in a second thread with its own database connection (as
another server process would have) while the test's thread changes the client and commits.
"""

import importlib
import queue
import threading
from collections import namedtuple
from datetime import timedelta
from types import SimpleNamespace

import psycopg2.errors
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from catalog import selectors
from omni.api import token_cache
from omni.models import ApiClient, ApiClientAccess
from omni.services import api_client_create, api_client_issue_token
from tests.factories import ChannelFactory, VariantFactory

VARIANTS = "/api/v1/catalog/variants/"
CHANNELS = "/api/v1/channels/"
Notify = namedtuple("Notify", "pid channel payload")


def get(token: str, path: str, method: str = "get", **kwargs) -> tuple[int, int]:
    """(status, SQL queries) of one API request on the calling thread's connection."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    with CaptureQueriesContext(connection) as captured:
        response = getattr(api, method)(path, **kwargs)
    if response.status_code == 401:
        assert response.json()["code"] == "authentication_failed"
    return response.status_code, len(captured.captured_queries)


class OtherProcess:
    """A thread with its own database connection, running what it is given one job at a time."""

    def __init__(self):
        self.jobs = queue.Queue()
        self.results = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while (job := self.jobs.get()) is not None:
                try:
                    self.results.put((True, job()))
                except BaseException as exc:  # handed to the test's thread
                    self.results.put((False, exc))
        finally:
            connection.close()

    def submit(self, job) -> None:
        self.jobs.put(job)

    def result(self):
        ok, value = self.results.get(timeout=30)
        if not ok:
            raise value
        return value

    def __call__(self, job):
        self.submit(job)
        return self.result()

    def stop(self):
        self.jobs.put(None)
        self.thread.join(timeout=30)


@pytest.fixture
def other():
    process = OtherProcess()
    yield process
    process.stop()


@pytest.fixture
def sku(transactional_db):
    return VariantFactory(sku="TC-1").sku


def reader() -> tuple[ApiClient, str]:
    return api_client_create(name="pos", access=ApiClientAccess.READ)


# --- The cache is used ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_cached_lookup_sends_only_the_lookup_query(sku, other):
    _client, token = reader()
    ChannelFactory()

    # first use on the connection: the token query (prepared), the last_used_at write and
    # the lookup (prepared)
    assert other(lambda: get(token, f"{VARIANTS}{sku}/")) == (200, 5)
    assert other(lambda: get(token, f"{VARIANTS}{sku}/")) == (200, 1)
    assert other(lambda: get(token, CHANNELS)) == (200, 2)  # count and page, no token query
    assert other(lambda: get(token, f"{VARIANTS}NO-SUCH/")) == (404, 1)


@pytest.mark.django_db(transaction=True)
def test_writes_and_other_methods_check_the_token_with_a_query(sku, other):
    _client, token = api_client_create(name="pim", access=ApiClientAccess.WRITE)
    other(lambda: get(token, f"{VARIANTS}{sku}/"))

    status, queries = other(lambda: get(token, f"{VARIANTS}{sku}/", "patch", data={}))
    assert status == 200
    assert queries >= 2  # the token query, then the update's own
    assert other(lambda: get(token, f"{VARIANTS}{sku}/", "options")) == (200, 1)


@pytest.mark.django_db(transaction=True)
def test_failed_tokens_are_not_cached(sku, other):
    client, token = reader()
    wrong = f"omni_{client.token_prefix}_{'x' * 43}"

    other(lambda: get(wrong, f"{VARIANTS}{sku}/"))  # prepares the token query

    for _ in range(3):
        assert other(lambda: get(wrong, f"{VARIANTS}{sku}/")) == (401, 1)
    cache = other(lambda: token_cache.usable_cache(connection))
    assert cache.entries == {}


def test_inside_a_transaction_the_cache_is_not_used(db):
    # pytest-django runs this test in a transaction, where no notification could arrive
    sku = VariantFactory().sku
    _client, token = reader()
    get(token, f"{VARIANTS}{sku}/")

    assert get(token, f"{VARIANTS}{sku}/") == (200, 2)
    assert token_cache.usable_cache(connection) is None


@pytest.mark.django_db(transaction=True)
def test_the_cache_keeps_the_token_hash_not_the_token(sku, other):
    client, token = reader()
    other(lambda: get(token, f"{VARIANTS}{sku}/"))

    entries = other(lambda: dict(token_cache.usable_cache(connection).entries))

    assert list(entries) == [client.token_hash]
    assert not any(token in str(value) for value in entries[client.token_hash].values)


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_starts_with_an_empty_cache(sku):
    _client, token = reader()
    get(token, f"{VARIANTS}{sku}/")
    assert len(token_cache.usable_cache(connection).entries) == 1

    connection.close()
    assert get(token, f"{VARIANTS}{sku}/") == (200, 4)  # prepares again, checks the token

    assert len(token_cache.usable_cache(connection).entries) == 1


@pytest.mark.django_db(transaction=True)
def test_last_used_at_is_still_recorded_at_most_every_5_minutes(sku, monkeypatch):
    client, token = reader()
    start = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: start)
    get(token, f"{VARIANTS}{sku}/")
    client.refresh_from_db()
    assert client.last_used_at == start

    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(minutes=4))
    assert get(token, f"{VARIANTS}{sku}/") == (200, 1)
    client.refresh_from_db()
    assert client.last_used_at == start

    later = start + timedelta(minutes=5, seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert get(token, f"{VARIANTS}{sku}/") == (200, 3)  # token query, the write, the lookup
    client.refresh_from_db()
    assert client.last_used_at == later
    assert get(token, f"{VARIANTS}{sku}/") == (200, 1)


# --- Revocation is immediate on every connection ----------------------------------------------


def deactivate(client, token):
    client.is_active = False
    client.save()


def deactivate_by_update(client, token):
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)


def delete(client, token):
    ApiClient.objects.filter(pk=client.pk).delete()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revoke", [deactivate, deactivate_by_update, delete])
def test_revocation_fails_the_very_next_request_on_another_connection(sku, other, revoke):
    path = f"{VARIANTS}{sku}/"
    for _ in range(10):  # a notification often reaches the other socket after the next request
        client, token = reader()
        other(lambda token=token: get(token, path))
        assert other(lambda token=token: get(token, path)) == (200, 1)  # from the cache

        revoke(client, token)  # committed (autocommit) when this returns

        status, _queries = other(lambda token=token: get(token, path))
        assert status == 401
        assert other(lambda token=token: get(token, path))[0] == 401
        ApiClient.objects.filter(pk=client.pk).delete()


@pytest.mark.django_db(transaction=True)
def test_a_reissued_token_replaces_the_old_one_at_once_on_another_connection(sku, other):
    path = f"{VARIANTS}{sku}/"
    client, token = reader()
    for _ in range(10):
        other(lambda token=token: get(token, path))
        assert other(lambda token=token: get(token, path)) == (200, 1)

        new_token = api_client_issue_token(client=client)

        assert other(lambda token=token: get(token, path))[0] == 401
        assert other(lambda new_token=new_token: get(new_token, path))[0] == 200
        token = new_token


@pytest.mark.django_db(transaction=True)
def test_a_revocation_committed_while_a_request_runs_fails_that_request(sku, other, monkeypatch):
    client, token = reader()
    path = f"{VARIANTS}{sku}/"
    other(lambda: get(token, path))
    assert other(lambda: get(token, path)) == (200, 1)
    in_view, revoked = threading.Event(), threading.Event()
    lookup = selectors.variant_detail_by_sku

    def slow_lookup(sku):
        in_view.set()
        assert revoked.wait(timeout=10)
        return lookup(sku)

    monkeypatch.setattr(selectors, "variant_detail_by_sku", slow_lookup)
    other.submit(lambda: get(token, path))
    assert in_view.wait(timeout=10)
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)
    revoked.set()

    status, queries = other.result()

    assert status == 401
    assert queries == 2  # the lookup, then the token query that found the client revoked


@pytest.mark.django_db(transaction=True)
def test_changes_that_keep_the_token_valid_keep_it_working(sku, other):
    client, token = api_client_create(name="pim", access=ApiClientAccess.WRITE)
    path = f"{VARIANTS}{sku}/"
    other(lambda: get(token, path))

    ApiClient.objects.filter(pk=client.pk).update(name="pim 2")
    assert other(lambda: get(token, path))[0] == 200
    assert other(lambda: get(token, path)) == (200, 1)

    ApiClient.objects.filter(pk=client.pk).update(access=ApiClientAccess.READ)
    status, _queries = other(lambda: get(token, path, "patch", data={"is_active": False}))
    assert status == 403  # read-only now


# --- The trigger ------------------------------------------------------------------------------


def notifications() -> list[str]:
    """Payloads received on this connection since the last call (it gets its own, too)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    raw = connection.connection
    payloads = [n.payload for n in raw.notifies if n.channel == token_cache.CHANNEL]
    del raw.notifies[:]
    return payloads


@pytest.mark.django_db(transaction=True)
def test_the_trigger_names_the_client_changed_or_deleted_but_not_for_last_used_at():
    client, _token = reader()
    other, _other_token = api_client_create(name="web", access=ApiClientAccess.READ)
    notifications()

    ApiClient.objects.filter(pk=client.pk).update(last_used_at=timezone.now())
    assert notifications() == []
    api_client_issue_token(client=client)
    assert notifications() == [str(client.pk)]
    ApiClient.objects.update(is_active=False)
    assert sorted(notifications()) == sorted([str(client.pk), str(other.pk)])
    ApiClient.objects.filter(pk=other.pk).delete()
    assert notifications() == [str(other.pk)]
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE omni_apiclient")
    assert notifications() == ["*"]


def test_the_migration_can_be_reversed(db):
    migration = importlib.import_module("omni.migrations.0003_api_client_notify")

    def triggers():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'omni_apiclient'::regclass "
                "AND NOT tgisinternal ORDER BY tgname"
            )
            return [row[0] for row in cursor.fetchall()]

    assert triggers() == ["omni_api_client_notify", "omni_api_client_notify_truncate"]
    with connection.schema_editor() as editor:
        migration.backward(None, editor)
    assert triggers() == []
    with connection.schema_editor() as editor:
        migration.forward(None, editor)
    assert triggers() == ["omni_api_client_notify", "omni_api_client_notify_truncate"]


# --- The cache on its own ---------------------------------------------------------------------


def unsaved(client_id: int) -> ApiClient:
    return ApiClient(id=client_id, name=f"c{client_id}", last_used_at=timezone.now())


def fake_raw(*notes):
    return SimpleNamespace(poll=lambda: None, notifies=list(notes))


def test_notifications_drop_the_clients_they_name_and_leave_other_channels_alone():
    cache = token_cache.ConnectionCache(fake_raw())
    for client_id in (1, 2, 3):
        cache.store(f"key{client_id}", unsaved(client_id))
    other_channel = Notify(1, "elsewhere", "2")
    cache.raw.notifies += [Notify(1, token_cache.CHANNEL, "2"), other_channel]

    cache.drain()

    assert list(cache.entries) == ["key1", "key3"]
    assert cache.raw.notifies == [other_channel]
    cache.raw.notifies.append(Notify(1, token_cache.CHANNEL, "*"))
    cache.drain()
    assert cache.entries == {}


def test_an_unexpected_payload_clears_the_cache():
    cache = token_cache.ConnectionCache(fake_raw(Notify(1, token_cache.CHANNEL, "??")))
    cache.store("key1", unsaved(1))
    cache.drain()
    assert cache.entries == {}


def test_a_full_cache_forgets_its_oldest_entry(monkeypatch):
    monkeypatch.setattr(token_cache, "MAX_ENTRIES", 3)
    cache = token_cache.ConnectionCache(fake_raw())
    for client_id in (1, 2, 3, 4):
        cache.store(f"key{client_id}", unsaved(client_id))
    cache.store("key3", unsaved(3))

    assert list(cache.entries) == ["key2", "key3", "key4"]


def test_other_databases_get_no_cache():
    sqlite = SimpleNamespace(vendor="sqlite", connection=object())
    token_cache.listen(sender=None, connection=sqlite)
    assert token_cache.usable_cache(sqlite) is None


class RefusingCursor:
    """A hot standby's answer to LISTEN."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql):
        raise psycopg2.errors.ReadOnlySqlTransaction("cannot execute LISTEN during recovery")


def test_a_server_that_refuses_listen_gets_no_cache():
    raw = SimpleNamespace(poll=lambda: None, notifies=[], autocommit=True, cursor=RefusingCursor)
    standby = SimpleNamespace(
        vendor="postgresql", connection=raw, wrap_database_errors=connection.wrap_database_errors
    )

    token_cache.listen(sender=None, connection=standby)

    assert token_cache.usable_cache(standby) is None
