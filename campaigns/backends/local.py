"""The local outbox: SMS, push and social messages written as JSON files, for development.

Each message is one file, ``<OMNI_LOCAL_OUTBOX_DIR>/<channel code>/<message id>.json``,
written to a temporary name and moved into place, so a reader never sees half a file and
sending the same message again replaces the same file (the backend is idempotent). The file
holds the message as the HTTP gateway would receive it, plus the HTML and the unsubscribe
link::

    {"id": 42, "channel": "sms", "kind": "sms", "to": "+33612345678", "subject": "",
     "text": "...", "html": "", "unsubscribe_url": "...", "metadata": {...}}

It is built for speed (the sending benchmark uses it): a channel's directory is made once per
process, and files are not synced to disk.
"""

import contextlib
import json
import os
import threading

from django.conf import settings

from campaigns.backends.base import (
    DeliveryBackend,
    DeliveryResult,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)


def outbox_path(message: OutgoingMessage, directory=None) -> str:
    """Where the local outbox writes (or wrote) a message."""
    root = os.fspath(directory or settings.OMNI_LOCAL_OUTBOX_DIR)
    return os.path.join(root, message.channel_code, f"{message.message_id}.json")


def outbox_document(message: OutgoingMessage) -> dict:
    return {
        "id": message.message_id,
        "channel": message.channel_code,
        "kind": message.channel_kind,
        "to": message.to,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "unsubscribe_url": message.unsubscribe_url,
        "metadata": message.metadata,
    }


class LocalOutboxBackend(DeliveryBackend):
    """Writes each message to a JSON file; ``directory`` defaults to
    ``settings.OMNI_LOCAL_OUTBOX_DIR``, read at each send."""

    idempotent = True

    def __init__(self, directory=None):
        self.directory = directory
        self._folders: set[str] = set()  # channel directories known to exist

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        code = message.channel_code
        if not code or code in (".", "..") or os.path.basename(code) != code:
            raise PermanentDeliveryError(f"Channel code {code!r} cannot name an outbox folder.")
        root = os.fspath(self.directory or settings.OMNI_LOCAL_OUTBOX_DIR)
        folder = os.path.join(root, code)
        data = json.dumps(
            outbox_document(message), ensure_ascii=False, indent=2, default=str
        ).encode()
        path = os.path.join(folder, f"{message.message_id}.json")
        temporary = os.path.join(
            folder, f".{message.message_id}.{os.getpid()}.{threading.get_ident()}.tmp"
        )
        try:
            if folder not in self._folders:
                os.makedirs(folder, exist_ok=True)
                self._folders.add(folder)
            try:
                self._write(temporary, path, data)
            except FileNotFoundError:
                # The folder was removed since this process made it (a cleaned outbox).
                os.makedirs(folder, exist_ok=True)
                self._write(temporary, path, data)
        except OSError as error:
            raise TransientDeliveryError(f"Cannot write {path}: {error}") from error
        return DeliveryResult(provider_id=f"local:{message.message_id}", delivered=True)

    @staticmethod
    def _write(temporary: str, path: str, data: bytes) -> None:
        try:
            with open(temporary, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
