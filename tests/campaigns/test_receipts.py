"""Delivery receipts from the gateway: what they do to a message (idempotent), and the webhook
that takes them, signed as the gateway backend signs (good, bad, replayed)."""

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns.models import Enrolment, Message, MessageStatus
from campaigns.services.receipts import receipt_record, receipt_signature_problem
from omni.exceptions import Conflict, NotFound, ValidationFailed

pytestmark = pytest.mark.django_db

SECRET = "gateway-test-secret"
URL = "/api/v1/campaigns/receipts/"
SENT_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AT = "2026-03-02T09:00:05Z"
AT_VALUE = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.OMNI_GATEWAY_SECRET = SECRET


@pytest.fixture
def make_message(make_campaign, make_customer, channels):
    """A message of a one-step SMS campaign, in ``status``."""
    campaign = make_campaign(steps=((0, "sms"),))
    step = campaign.steps.get()
    counter = iter(range(1, 1000))

    def _make(status=MessageStatus.SENT, provider_id="", **fields):
        n = next(counter)
        customer = make_customer(email=None, phone=f"+336123456{n:02d}", opt_in=("sms",))
        enrolment = Enrolment.objects.create(
            campaign=campaign,
            customer=customer,
            subject_key=f"test:{n}",
            status="completed",
            enrolled_at=SENT_AT,
        )
        return Message.objects.create(
            enrolment=enrolment,
            campaign=campaign,
            step=step,
            customer=customer,
            channel=channels.sms,
            status=status,
            to=f"+336123456{n:02d}",
            provider_id=provider_id,
            created_at=SENT_AT,
            sent_at=SENT_AT if status != MessageStatus.QUEUED else None,
            **fields,
        )

    return _make


def _state(message):
    return Message.objects.filter(pk=message.pk).values(
        "status", "delivered_at", "failed_at", "reason", "detail"
    )[0]


# --- The service ------------------------------------------------------------------------------


def test_a_delivery_receipt_delivers_a_sent_message(make_message):
    message = make_message()

    recorded = receipt_record(message_id=message.pk, status="delivered", at=AT)

    assert recorded.changed is True
    assert _state(message) == {
        "status": "delivered",
        "delivered_at": AT_VALUE,
        "failed_at": None,
        "reason": "",
        "detail": "",
    }


def test_a_failure_receipt_fails_a_sent_message(make_message):
    message = make_message(provider_id="gw-1")

    receipt_record(provider_id="gw-1", status="failed", at=AT, detail="  Handset unreachable ")

    assert _state(message) == {
        "status": "failed",
        "delivered_at": None,
        "failed_at": AT_VALUE,
        "reason": "undelivered",
        "detail": "Handset unreachable",
    }


def test_the_same_receipt_again_changes_nothing(make_message):
    message = make_message()
    receipt_record(message_id=message.pk, status="delivered", at=AT)

    again = receipt_record(
        message_id=message.pk, status="delivered", at="2026-03-02T10:00:00Z", detail="x"
    )

    assert again.changed is False
    assert _state(message)["delivered_at"] == AT_VALUE


def test_delivered_after_failed_wins(make_message):
    message = make_message(status=MessageStatus.FAILED, reason="unknown_outcome")

    receipt_record(message_id=message.pk, status="delivered", at=AT)

    assert _state(message)["status"] == "delivered"


def test_a_failure_after_delivery_is_refused(make_message):
    message = make_message()
    receipt_record(message_id=message.pk, status="delivered", at=AT)

    with pytest.raises(Conflict) as caught:
        receipt_record(message_id=message.pk, status="failed", at=AT)

    assert caught.value.code == "receipt_conflict"
    assert _state(message)["status"] == "delivered"


@pytest.mark.parametrize("status", [MessageStatus.QUEUED, MessageStatus.SENDING])
def test_a_message_not_sent_yet_is_refused(make_message, status):
    message = make_message(status=status)

    with pytest.raises(Conflict) as caught:
        receipt_record(message_id=message.pk, status="delivered")

    assert caught.value.code == "message_not_sent"
    assert _state(message)["status"] == status


def test_an_unknown_message_is_not_found(make_message):
    make_message(provider_id="gw-1")
    for kwargs in ({"message_id": 999_999}, {"provider_id": "gw-2"}):
        with pytest.raises(NotFound) as caught:
            receipt_record(status="delivered", **kwargs)
        assert caught.value.code == "not_found"


def test_a_provider_id_on_two_messages_is_ambiguous(make_message):
    make_message(provider_id="gw-1")
    make_message(provider_id="gw-1")

    with pytest.raises(Conflict) as caught:
        receipt_record(provider_id="gw-1", status="delivered")

    assert caught.value.code == "provider_id_ambiguous"


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        ({"status": "delivered"}, ["non_field_errors"]),
        ({"status": "delivered", "message_id": 1, "provider_id": "x"}, ["non_field_errors"]),
        ({"status": "read", "message_id": 1}, ["status"]),
        ({"status": "delivered", "message_id": "1"}, ["message_id"]),
        ({"status": "delivered", "message_id": 1, "at": "yesterday"}, ["at"]),
        ({"status": "delivered", "message_id": 1, "at": "2999-01-01T00:00:00Z"}, ["at"]),
        ({"status": "delivered", "message_id": 1, "detail": 5}, ["detail"]),
    ],
)
def test_invalid_receipts_are_refused(make_message, kwargs, fields):
    message = make_message()
    with pytest.raises(ValidationFailed) as caught:
        receipt_record(**kwargs)
    assert sorted(caught.value.extra) == fields
    assert _state(message)["status"] == "sent"


def test_a_time_slightly_ahead_is_recorded_as_now(make_message):
    message = make_message()
    ahead = (timezone.now() + timedelta(seconds=30)).isoformat()

    receipt_record(message_id=message.pk, status="delivered", at=ahead)

    assert _state(message)["delivered_at"] <= timezone.now()


# --- Signatures -------------------------------------------------------------------------------


def _signature(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    """Computed here, independently of the code under test."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def test_signature_checks():
    body, now = b'{"a":1}', 1_800_000_000.0
    good = _signature(body, "1800000000")

    def problem(**kwargs):
        args = {"body": body, "timestamp": "1800000000", "signature": good, "now": now}
        return receipt_signature_problem(**{**args, **kwargs})

    assert problem() is None
    assert problem(now=now + 299) is None
    assert problem(body=b'{"a":2}') == "The signature does not match the body."
    assert problem(signature=_signature(body, "1800000000", "other")) == (
        "The signature does not match the body."
    )
    assert problem(now=now + 301).endswith("refused as a replay.")
    assert problem(timestamp="18e8") == "X-Omni-Timestamp must be a Unix time in seconds."
    assert problem(signature=None).startswith("Sign the receipt")


def test_no_secret_refuses_every_receipt(settings):
    settings.OMNI_GATEWAY_SECRET = ""
    body = b"{}"
    assert receipt_signature_problem(
        body=body, timestamp="1800000000", signature=_signature(body, "1800000000", "")
    ) == ("Receipts are not accepted: no gateway secret is configured.")


# --- The webhook ------------------------------------------------------------------------------


def _post(api, payload, *, timestamp=None, signature=None, raw=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    headers = {"HTTP_X_OMNI_TIMESTAMP": timestamp}
    headers["HTTP_X_OMNI_SIGNATURE"] = (
        _signature(body, timestamp) if signature is None else signature
    )
    return api.post(URL, data=body, content_type="application/json", **headers)


def _assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    return body


def test_a_signed_receipt_is_recorded(api, make_message):
    message = make_message()

    response = _post(api, {"message_id": message.pk, "status": "delivered", "at": AT})

    assert response.status_code == 200, response.content
    assert response.json() == {
        "message": message.pk,
        "status": "delivered",
        "changed": True,
        "delivered_at": AT,
        "failed_at": None,
    }
    assert _state(message)["delivered_at"] == AT_VALUE


def test_the_same_signed_receipt_twice_changes_nothing_the_second_time(api, make_message):
    message = make_message()
    payload = {"message_id": message.pk, "status": "failed", "at": AT, "detail": "bounced"}
    timestamp = str(int(time.time()))

    first = _post(api, payload, timestamp=timestamp)
    second = _post(api, payload, timestamp=timestamp)

    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["changed"], second.json()["changed"]) == (True, False)
    assert second.json()["failed_at"] == AT


def test_a_bad_signature_is_refused_and_changes_nothing(api, make_message):
    message = make_message()
    payload = {"message_id": message.pk, "status": "delivered"}
    timestamp = str(int(time.time()))
    other_body = json.dumps({"message_id": message.pk, "status": "failed"}).encode()

    for signature in ["sha256=00", _signature(other_body, timestamp), "", "garbage"]:
        response = _post(api, payload, timestamp=timestamp, signature=signature)
        _assert_error(response, 403, "invalid_signature")
    wrong_key = _signature(json.dumps(payload).encode(), timestamp, "not-the-secret")
    _assert_error(_post(api, payload, signature=wrong_key), 403, "invalid_signature")

    assert _state(message)["status"] == "sent"


def test_a_replayed_receipt_is_refused(api, make_message):
    message = make_message()
    old = str(int(time.time()) - 600)  # captured ten minutes ago, correctly signed then

    body = _assert_error(
        _post(api, {"message_id": message.pk, "status": "delivered"}, timestamp=old),
        403,
        "invalid_signature",
    )

    assert body["message"].endswith("refused as a replay.")
    assert _state(message)["status"] == "sent"


def test_an_unsigned_call_with_a_token_is_refused(writer, staff_api, make_message):
    message = make_message()
    for caller in (writer, staff_api):
        response = caller.post(URL, {"message_id": message.pk, "status": "delivered"})
        _assert_error(response, 403, "invalid_signature")
    assert _state(message)["status"] == "sent"


def test_unknown_message_is_404(api, make_message):
    make_message()
    _assert_error(_post(api, {"message_id": 987654, "status": "delivered"}), 404, "not_found")


def test_invalid_receipt_is_400_with_field_errors(api, make_message):
    message = make_message()

    body = _assert_error(
        _post(api, {"message_id": message.pk, "status": "read"}), 400, "validation_error"
    )

    assert body["details"] == {"status": ["One of: delivered, failed."]}
    body = _assert_error(_post(api, None, raw=b"[1, 2]"), 400, "validation_error")
    assert body["details"] == {"non_field_errors": ["Expected a JSON object."]}


def test_conflicting_receipt_is_409(api, make_message):
    message = make_message(status=MessageStatus.QUEUED)
    _assert_error(
        _post(api, {"message_id": message.pk, "status": "delivered"}), 409, "message_not_sent"
    )
