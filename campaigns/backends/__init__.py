"""Delivery backends, one per message kind, chosen by ``settings.OMNI_MESSAGING_BACKENDS``.

``backend_for("sms")`` returns the backend instance for that kind, made once and kept; a
change of ``OMNI_MESSAGING_BACKENDS`` (``override_settings``, pytest-django's ``settings``)
drops the kept instances, and ``reset_backends()`` does so by hand. Backends read their other
settings (gateway URL, outbox directory, email backend) when they send, so overriding those
needs no reset.
"""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from campaigns.backends.base import (
    DeliveryBackend,
    DeliveryError,
    DeliveryResult,
    OutgoingMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)

__all__ = [
    "KINDS",
    "DeliveryBackend",
    "DeliveryError",
    "DeliveryResult",
    "OutgoingMessage",
    "PermanentDeliveryError",
    "TransientDeliveryError",
    "backend_for",
    "reset_backends",
]

KINDS = ("email", "sms", "push", "social_dm")

_backends: dict[str, DeliveryBackend] = {}
_lock = threading.Lock()


def backend_for(kind: str) -> DeliveryBackend:
    """The delivery backend of a messaging channel kind (email, sms, push or social_dm)."""
    backend = _backends.get(kind)
    if backend is not None:
        return backend
    paths = getattr(settings, "OMNI_MESSAGING_BACKENDS", {})
    if kind not in paths:
        raise ImproperlyConfigured(
            f"No delivery backend for messages of kind {kind!r}: "
            f"OMNI_MESSAGING_BACKENDS names {', '.join(sorted(paths)) or 'none'}."
        )
    try:
        backend_class = import_string(paths[kind])
    except ImportError as error:
        raise ImproperlyConfigured(
            f"OMNI_MESSAGING_BACKENDS[{kind!r}] = {paths[kind]!r} cannot be imported: {error}"
        ) from error
    with _lock:
        return _backends.setdefault(kind, backend_class())


def reset_backends() -> None:
    """Forget the backend instances, so the next ``backend_for`` makes them again."""
    with _lock:
        _backends.clear()


def _on_setting_changed(*, setting, **kwargs):
    if setting == "OMNI_MESSAGING_BACKENDS":
        reset_backends()


setting_changed.connect(_on_setting_changed, dispatch_uid="campaigns.backends.reset")
