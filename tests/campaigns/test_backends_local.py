"""The local outbox backend and the backend registry."""

import json
import os

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from campaigns.backends import backend_for, reset_backends
from campaigns.backends.base import (
    DeliveryResult,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from campaigns.backends.email import EmailBackend
from campaigns.backends.gateway import HttpGatewayBackend
from campaigns.backends.local import LocalOutboxBackend, outbox_path

LOCAL = "campaigns.backends.local.LocalOutboxBackend"
HTTP = "campaigns.backends.gateway.HttpGatewayBackend"
EMAIL = "campaigns.backends.email.EmailBackend"


@pytest.fixture
def outbox(settings, tmp_path):
    settings.OMNI_LOCAL_OUTBOX_DIR = tmp_path / "outbox"
    return tmp_path / "outbox"


@pytest.fixture(autouse=True)
def _fresh_registry():
    reset_backends()
    yield
    reset_backends()


def sms(message_id=42, **fields):
    values = {
        "message_id": message_id,
        "channel_code": "sms",
        "channel_kind": "sms",
        "to": "+33612345678",
        "text": "Léa, votre panier vous attend : https://omni.example.com/t/abc",
        "unsubscribe_url": "https://omni.example.com/u/xyz",
        "metadata": {"campaign": 3, "step": 7, "customer": 9},
    }
    values.update(fields)
    return OutgoingMessage(**values)


def read(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def test_send_writes_one_json_file_per_message(outbox):
    result = LocalOutboxBackend().send(sms())

    assert result == DeliveryResult(provider_id="local:42", delivered=True)
    assert sorted(os.listdir(outbox)) == ["sms"]
    assert sorted(os.listdir(outbox / "sms")) == ["42.json"]
    assert read(outbox / "sms" / "42.json") == {
        "id": 42,
        "channel": "sms",
        "kind": "sms",
        "to": "+33612345678",
        "subject": "",
        "text": "Léa, votre panier vous attend : https://omni.example.com/t/abc",
        "html": "",
        "unsubscribe_url": "https://omni.example.com/u/xyz",
        "metadata": {"campaign": 3, "step": 7, "customer": 9},
    }
    assert outbox_path(sms()) == str(outbox / "sms" / "42.json")


def test_sending_again_overwrites_the_same_file(outbox):
    backend = LocalOutboxBackend()
    backend.send(sms(text="first"))
    result = backend.send(sms(text="second"))

    assert result == DeliveryResult(provider_id="local:42", delivered=True)
    assert LocalOutboxBackend.idempotent is True
    # No temporary file is left behind either.
    assert sorted(os.listdir(outbox / "sms")) == ["42.json"]
    assert read(outbox / "sms" / "42.json")["text"] == "second"


def test_send_many_writes_each_message_under_its_channel(outbox):
    messages = [
        sms(1),
        sms(2, to="+33700000000"),
        OutgoingMessage(
            message_id=3,
            channel_code="push",
            channel_kind="push",
            to="device-abc",
            subject="Back in stock",
            text="The blue jacket is back in your size.",
        ),
    ]

    results = LocalOutboxBackend().send_many(messages)

    assert results == [
        DeliveryResult(provider_id="local:1", delivered=True),
        DeliveryResult(provider_id="local:2", delivered=True),
        DeliveryResult(provider_id="local:3", delivered=True),
    ]
    assert sorted(os.listdir(outbox)) == ["push", "sms"]
    assert sorted(os.listdir(outbox / "sms")) == ["1.json", "2.json"]
    assert read(outbox / "sms" / "2.json")["to"] == "+33700000000"
    push = read(outbox / "push" / "3.json")
    assert (push["subject"], push["text"], push["metadata"]) == (
        "Back in stock",
        "The blue jacket is back in your size.",
        {},
    )


def test_a_removed_outbox_folder_is_made_again(outbox, tmp_path):
    backend = LocalOutboxBackend()
    backend.send(sms(1))
    os.remove(outbox / "sms" / "1.json")
    os.rmdir(outbox / "sms")

    backend.send(sms(2))

    assert sorted(os.listdir(outbox / "sms")) == ["2.json"]


def test_an_explicit_directory_wins_over_the_setting(outbox, tmp_path):
    LocalOutboxBackend(directory=tmp_path / "elsewhere").send(sms(5))

    assert os.listdir(tmp_path / "elsewhere" / "sms") == ["5.json"]
    assert not outbox.exists()


@pytest.mark.parametrize("code", ["../etc", "a/b", "..", ""])
def test_a_channel_code_that_is_not_a_folder_name_is_refused(outbox, code):
    with pytest.raises(PermanentDeliveryError) as caught:
        LocalOutboxBackend().send(sms(channel_code=code))

    assert str(caught.value) == f"Channel code {code!r} cannot name an outbox folder."
    assert not outbox.exists()


def test_an_unwritable_outbox_is_a_transient_error(settings, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings.OMNI_LOCAL_OUTBOX_DIR = blocker

    with pytest.raises(TransientDeliveryError) as caught:
        LocalOutboxBackend().send(sms())

    assert str(caught.value).startswith(f"Cannot write {blocker}/sms/42.json: ")


# --- Registry -------------------------------------------------------------------------------


def test_default_settings_send_email_by_django_and_the_rest_to_the_local_outbox(settings):
    assert settings.OMNI_MESSAGING_BACKENDS == {
        "email": EMAIL,
        "sms": LOCAL,
        "push": LOCAL,
        "social_dm": LOCAL,
    }
    assert type(backend_for("email")) is EmailBackend
    assert type(backend_for("sms")) is LocalOutboxBackend
    assert type(backend_for("push")) is LocalOutboxBackend
    assert type(backend_for("social_dm")) is LocalOutboxBackend


def test_backends_are_made_once_per_kind():
    assert backend_for("sms") is backend_for("sms")
    assert backend_for("sms") is not backend_for("push")


def test_a_settings_change_picks_other_backends(settings):
    local = backend_for("sms")
    settings.OMNI_MESSAGING_BACKENDS = {"email": EMAIL, "sms": HTTP, "push": HTTP}

    assert type(backend_for("sms")) is HttpGatewayBackend
    assert type(backend_for("push")) is HttpGatewayBackend
    with pytest.raises(ImproperlyConfigured) as caught:
        backend_for("social_dm")
    assert str(caught.value) == (
        "No delivery backend for messages of kind 'social_dm': "
        "OMNI_MESSAGING_BACKENDS names email, push, sms."
    )
    assert backend_for("sms") is not local


def test_override_settings_is_undone_on_exit():
    with override_settings(OMNI_MESSAGING_BACKENDS={"sms": HTTP}):
        assert type(backend_for("sms")) is HttpGatewayBackend

    assert type(backend_for("sms")) is LocalOutboxBackend


def test_reset_backends_makes_new_instances():
    first = backend_for("email")
    reset_backends()

    assert backend_for("email") is not first


def test_an_unknown_kind_or_path_is_a_configuration_error(settings):
    with pytest.raises(ImproperlyConfigured) as caught:
        backend_for("ads_audience")
    assert str(caught.value) == (
        "No delivery backend for messages of kind 'ads_audience': "
        "OMNI_MESSAGING_BACKENDS names email, push, sms, social_dm."
    )

    settings.OMNI_MESSAGING_BACKENDS = {"sms": "campaigns.backends.nowhere.Backend"}
    with pytest.raises(ImproperlyConfigured) as caught:
        backend_for("sms")
    assert str(caught.value).startswith(
        "OMNI_MESSAGING_BACKENDS['sms'] = 'campaigns.backends.nowhere.Backend' cannot be imported: "
    )
