"""The HTTP gateway backend against a real HTTP server on the loopback interface."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from campaigns.backends.base import (
    DeliveryResult,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from campaigns.backends.email import message_id_domain
from campaigns.backends.gateway import (
    GatewayUnreachable,
    HttpGatewayBackend,
    sign,
    verify_signature,
)

SECRET = "gateway-test-secret-0123456789"


class Gateway(ThreadingHTTPServer):
    """Records every request and answers from a script of (status, body, delay) replies;
    the last reply repeats."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), GatewayHandler)
        self.requests = []  # (path, headers, raw body)
        self.replies = [(200, b'{"id": "gw-1"}', 0)]
        self.lock = threading.Lock()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/messages"

    def next_reply(self):
        with self.lock:
            if len(self.replies) > 1:
                return self.replies.pop(0)
            return self.replies[0]


class GatewayHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers), body))
        status, reply, delay = self.server.next_reply()
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except OSError:
            pass  # the client gave up (timeout test)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def gateway(settings):
    server = Gateway()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.OMNI_GATEWAY_URL = server.url
    settings.OMNI_GATEWAY_SECRET = SECRET
    settings.OMNI_GATEWAY_TIMEOUT = 5
    settings.OMNI_GATEWAY_RETRIES = 2
    settings.OMNI_GATEWAY_BACKOFF = 0.01
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def text_message(message_id=42, **fields):
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


def test_posts_signed_json_with_an_idempotency_key(gateway):
    before = int(time.time())
    result = HttpGatewayBackend().send(text_message())
    after = int(time.time())

    assert result == DeliveryResult(provider_id="gw-1", delivered=False)
    assert HttpGatewayBackend.idempotent is True
    [(path, headers, body)] = gateway.requests
    assert path == "/messages"
    assert json.loads(body) == {
        "id": 42,
        "channel": "sms",
        "kind": "sms",
        "to": "+33612345678",
        "subject": "",
        "text": "Léa, votre panier vous attend : https://omni.example.com/t/abc",
        "metadata": {"campaign": 3, "step": 7, "customer": 9},
    }
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == f"omni-message-42@{message_id_domain()}"
    timestamp = headers["X-Omni-Timestamp"]
    assert before <= int(timestamp) <= after
    # The documented scheme, computed here independently of the backend.
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert headers["X-Omni-Signature"] == f"sha256={expected.hexdigest()}"
    assert verify_signature(
        secret=SECRET, body=body, timestamp=timestamp, signature=headers["X-Omni-Signature"]
    )


def test_verify_signature_refuses_tampering_other_secrets_and_replays():
    body = b'{"id":1}'
    signature = sign(SECRET, "1700000000", body)
    check = {"timestamp": "1700000000", "signature": signature, "now": 1700000100}

    assert verify_signature(secret=SECRET, body=body, **check) is True
    assert verify_signature(secret=SECRET, body=b'{"id":2}', **check) is False
    assert verify_signature(secret="another-secret", body=body, **check) is False
    assert verify_signature(secret=SECRET, body=body, **{**check, "timestamp": "1700000001"}) is (
        False
    )
    assert verify_signature(secret=SECRET, body=body, **{**check, "now": 1700000301}) is False
    assert verify_signature(secret=SECRET, body=body, **{**check, "timestamp": "soon"}) is False


def test_two_server_errors_then_success_takes_exactly_three_requests(gateway):
    gateway.replies = [
        (503, b'{"error": "busy"}', 0),
        (503, b'{"error": "busy"}', 0),
        (200, b'{"id": "gw-77", "delivered": true}', 0),
    ]

    result = HttpGatewayBackend().send(text_message())

    assert result == DeliveryResult(provider_id="gw-77", delivered=True)
    assert len(gateway.requests) == 3
    # Every attempt carries the same key and body, each freshly signed.
    assert {headers["Idempotency-Key"] for _, headers, _ in gateway.requests} == {
        f"omni-message-42@{message_id_domain()}"
    }
    assert len({body for _, _, body in gateway.requests}) == 1
    for _, headers, body in gateway.requests:
        assert verify_signature(
            secret=SECRET,
            body=body,
            timestamp=headers["X-Omni-Timestamp"],
            signature=headers["X-Omni-Signature"],
        )


def test_a_server_error_every_time_is_transient_after_one_plus_retries_requests(gateway):
    gateway.replies = [(500, b"oops", 0)]

    with pytest.raises(TransientDeliveryError) as caught:
        HttpGatewayBackend().send(text_message())

    assert str(caught.value) == "Gateway failed after 3 attempt(s): HTTP 500: oops"
    assert len(gateway.requests) == 3


def test_the_retry_count_follows_the_setting(gateway, settings):
    settings.OMNI_GATEWAY_RETRIES = 0
    gateway.replies = [(502, b"", 0)]

    with pytest.raises(TransientDeliveryError):
        HttpGatewayBackend().send(text_message())

    assert len(gateway.requests) == 1


def test_too_many_requests_is_retried(gateway):
    gateway.replies = [(429, b"slow down", 0), (200, b"", 0)]

    result = HttpGatewayBackend().send(text_message())

    assert result == DeliveryResult(provider_id="", delivered=False)
    assert len(gateway.requests) == 2


def test_a_client_error_is_permanent_after_exactly_one_request(gateway):
    gateway.replies = [(400, b'{"error": "invalid phone number"}', 0)]

    with pytest.raises(PermanentDeliveryError) as caught:
        HttpGatewayBackend().send(text_message())

    assert str(caught.value) == (
        'Gateway refused the message: HTTP 400: {"error": "invalid phone number"}'
    )
    assert len(gateway.requests) == 1


def test_a_redirect_is_not_followed(gateway):
    gateway.replies = [(302, b"", 0)]

    with pytest.raises(PermanentDeliveryError) as caught:
        HttpGatewayBackend().send(text_message())

    assert str(caught.value) == "Gateway refused the message: HTTP 302:"
    assert len(gateway.requests) == 1


def test_a_timeout_is_transient(gateway, settings):
    settings.OMNI_GATEWAY_TIMEOUT = 0.2
    settings.OMNI_GATEWAY_RETRIES = 1
    gateway.replies = [(200, b"{}", 1.0)]

    with pytest.raises(GatewayUnreachable) as caught:
        HttpGatewayBackend().send(text_message())

    assert isinstance(caught.value, TransientDeliveryError)
    assert str(caught.value).startswith("Gateway unreachable after 2 attempt(s): ")
    assert "timed out" in str(caught.value)
    assert len(gateway.requests) == 2


def test_a_refused_connection_is_transient(gateway, settings):
    gateway.shutdown()
    gateway.server_close()

    with pytest.raises(GatewayUnreachable) as caught:
        HttpGatewayBackend().send(text_message())

    assert str(caught.value).startswith(
        "Gateway unreachable after 3 attempt(s): ConnectionRefusedError("
    )


def test_send_many_reports_each_message(gateway):
    gateway.replies = [
        (200, b'{"id": 1001}', 0),
        (422, b"bad", 0),
        (200, b'{"id": "gw-3"}', 0),
    ]

    results = HttpGatewayBackend().send_many(
        [
            text_message(1),
            text_message(2),
            text_message(3, channel_code="push", channel_kind="push"),
        ]
    )

    assert results[0] == DeliveryResult(provider_id="1001")
    assert type(results[1]) is PermanentDeliveryError
    assert results[2] == DeliveryResult(provider_id="gw-3")
    assert [json.loads(body)["id"] for _, _, body in gateway.requests] == [1, 2, 3]
    assert json.loads(gateway.requests[2][2])["kind"] == "push"


def test_send_many_stops_calling_an_unreachable_gateway(gateway, settings):
    settings.OMNI_GATEWAY_TIMEOUT = 0.2
    settings.OMNI_GATEWAY_RETRIES = 0
    gateway.replies = [(200, b"{}", 1.0)]

    results = HttpGatewayBackend().send_many([text_message(1), text_message(2), text_message(3)])

    assert [type(result) for result in results] == [GatewayUnreachable] * 3
    assert str(results[2]).startswith("Not tried: Gateway unreachable after 1 attempt(s): ")
    assert len(gateway.requests) == 1


def test_send_many_stops_after_a_message_still_failing_with_server_errors(gateway, settings):
    settings.OMNI_GATEWAY_RETRIES = 1
    gateway.replies = [(503, b"busy", 0), (503, b"busy", 0), (200, b"{}", 0)]

    results = HttpGatewayBackend().send_many([text_message(1), text_message(2), text_message(3)])

    assert all(isinstance(result, TransientDeliveryError) for result in results)
    assert str(results[1]).startswith("Not tried: ")
    assert str(results[2]).startswith("Not tried: ")
    # Two requests for the first message (one retry); none for the other two.
    assert [json.loads(body)["id"] for _, _, body in gateway.requests] == [1, 1]


def test_send_many_goes_on_after_a_message_of_its_own_failing(gateway, settings):
    """A 500 for one message, still after its retry, is that message's failure: the next
    ones are sent (a message failing run after run would otherwise hold up the batch behind
    it until they all gave up, never tried)."""
    settings.OMNI_GATEWAY_RETRIES = 1
    gateway.replies = [(500, b"oops", 0), (500, b"oops", 0), (200, b"{}", 0), (200, b"{}", 0)]

    results = HttpGatewayBackend().send_many([text_message(1), text_message(2), text_message(3)])

    assert type(results[0]) is TransientDeliveryError
    assert str(results[0]) == "Gateway failed after 2 attempt(s): HTTP 500: oops"
    assert [type(result) for result in results[1:]] == [DeliveryResult, DeliveryResult]
    assert [json.loads(body)["id"] for _, _, body in gateway.requests] == [1, 1, 2, 3]


def test_explicit_arguments_win_over_settings(gateway, settings):
    settings.OMNI_GATEWAY_URL = "http://127.0.0.1:9/nowhere"
    settings.OMNI_GATEWAY_SECRET = "wrong"

    HttpGatewayBackend(url=gateway.url, secret="explicit-secret").send(text_message())

    [(_, headers, body)] = gateway.requests
    assert verify_signature(
        secret="explicit-secret",
        body=body,
        timestamp=headers["X-Omni-Timestamp"],
        signature=headers["X-Omni-Signature"],
    )


# --- Settings -------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def load_settings(**variables):
    """Import omni.settings in a fresh interpreter with these variables."""
    # Empty means unset, and wins over a developer's .env file.
    env = {
        **os.environ,
        "OMNI_MESSAGE_GATEWAY": "",
        "OMNI_GATEWAY_URL": "",
        "OMNI_GATEWAY_SECRET": "",
    }
    env.update(variables)
    code = "import omni.settings as s; print(s.OMNI_MESSAGING_BACKENDS['sms'])"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_the_http_gateway_needs_a_url_and_a_secret():
    no_url = load_settings(OMNI_MESSAGE_GATEWAY="http", OMNI_GATEWAY_SECRET="s3cret")
    no_secret = load_settings(OMNI_MESSAGE_GATEWAY="http", OMNI_GATEWAY_URL="https://gw.example")
    unknown = load_settings(OMNI_MESSAGE_GATEWAY="carrier-pigeon")
    complete = load_settings(
        OMNI_MESSAGE_GATEWAY="http",
        OMNI_GATEWAY_URL="https://gw.example/messages",
        OMNI_GATEWAY_SECRET="s3cret",
    )

    assert no_url.returncode == 1
    assert no_url.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: OMNI_MESSAGE_GATEWAY=http needs "
        "OMNI_GATEWAY_URL, the gateway's http(s):// address (see .env.example)."
    )
    assert no_secret.returncode == 1
    assert no_secret.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: OMNI_MESSAGE_GATEWAY=http needs "
        "OMNI_GATEWAY_SECRET, the key that signs each request (see .env.example)."
    )
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        "OMNI_MESSAGE_GATEWAY must be 'local' or 'http', not 'carrier-pigeon'."
    )
    assert (complete.returncode, complete.stdout) == (
        0,
        "campaigns.backends.gateway.HttpGatewayBackend\n",
    )
