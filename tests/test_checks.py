"""The deployment checks of messaging settings, case by case (the subprocess tests in
tests/integration/test_runtime.py run them through ``check --deploy``)."""

import pytest

from omni.checks import messaging_settings_check

PRODUCTION = {
    "OMNI_SITE_URL": "https://omni.shop.fr",
    "OMNI_SHOP_URL": "https://www.shop.fr",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "OMNI_MESSAGE_GATEWAY": "http",
    "DEFAULT_FROM_EMAIL": "Shop <hello@shop.fr>",
}


def codes(settings, **changes):
    for name, value in {**PRODUCTION, **changes}.items():
        setattr(settings, name, value)
    return [problem.id for problem in messaging_settings_check()]


def test_production_settings_pass(settings):
    assert codes(settings) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"OMNI_SITE_URL": "http://omni.shop.fr"}, ["omni.W001"]),
        ({"OMNI_SITE_URL": "https://127.0.0.1:8000"}, ["omni.W001"]),
        ({"OMNI_SITE_URL": "https://omni"}, ["omni.W001"]),
        ({"OMNI_SITE_URL": "https://app.localhost"}, ["omni.W001"]),
        ({"OMNI_SHOP_URL": "https://shop.example.org"}, ["omni.W002"]),
        ({"OMNI_SHOP_URL": "https://myexample.com"}, []),
        ({"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}, ["omni.W003"]),
        ({"OMNI_MESSAGE_GATEWAY": "local"}, ["omni.W004"]),
        ({"DEFAULT_FROM_EMAIL": "Omni <no-reply@localhost>"}, ["omni.W005"]),
        ({"DEFAULT_FROM_EMAIL": "hello@news.example.com"}, ["omni.W005"]),
        ({"DEFAULT_FROM_EMAIL": "Shop <hello@myexample.com>"}, []),
    ],
)
def test_each_development_default_is_named(settings, changes, expected):
    assert codes(settings, **changes) == expected
