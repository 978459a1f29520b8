"""/healthz: 200 while the database and the broker answer, 503 with the reason otherwise."""

import time

import pytest
from django.db import connection

from omni import views


def test_healthy(client, db, settings):
    assert settings.CELERY_BROKER_URL == "memory://"

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_needs_no_credentials(client, db):
    assert client.get("/healthz").status_code == 200


def test_unreachable_broker_is_503(client, db, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]) == ("unavailable", "ok")
    assert body["broker"].startswith("error: OperationalError: ")
    assert "Connection refused" in body["broker"]
    assert elapsed < 2


def test_database_failure_is_503(client, db, monkeypatch):
    class BrokenConnection:
        def cursor(self):
            raise connection.Database.OperationalError("server closed the connection")

    monkeypatch.setattr(views, "connection", BrokenConnection())

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "error: OperationalError: server closed the connection",
        "broker": "ok",
    }


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_only_get(client, db, method):
    assert getattr(client, method)("/healthz").status_code == 405
