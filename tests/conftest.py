"""Shared fixtures. The suite runs on PostgreSQL only (``make test`` starts a throwaway one)."""

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from omni.models import ApiClientAccess
from omni.services import api_client_create


def pytest_configure(config):
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            f"The tests run on PostgreSQL only, but DATABASE_URL selects {engine}. "
            "Run them with `make test`, which starts a throwaway PostgreSQL cluster."
        )
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # Pages render without a collectstatic manifest (production uses whitenoise's manifest).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _feeds_dir(settings, tmp_path):
    settings.OMNI_FEEDS_DIR = tmp_path / "feeds"


@pytest.fixture
def api():
    """An unauthenticated API client."""
    return APIClient()


def _token_client(access):
    client, token = api_client_create(name=f"integrator-{access}", access=access)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    api.api_client = client
    return api


@pytest.fixture
def reader(db):
    """An API client with a read-only token."""
    return _token_client(ApiClientAccess.READ)


@pytest.fixture
def writer(db):
    """An API client with a read-and-write token."""
    return _token_client(ApiClientAccess.WRITE)


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="merch", password="pw", is_staff=True, is_superuser=True
    )


@pytest.fixture
def staff_api(staff_user):
    api = APIClient()
    api.force_login(staff_user)
    return api
