"""Deployment checks (``manage.py check --deploy``): settings whose development defaults would
let a production Omni run while its messages go nowhere a customer can see."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Tags, Warning, register

# Addresses that never reach a customer: this machine, and the domains reserved for examples.
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
# Django's email backends that keep what they are given.
_NOT_SENDING = (
    "filebased.EmailBackend",
    "locmem.EmailBackend",
    "console.EmailBackend",
    "dummy.EmailBackend",
)


def _nowhere(host: str) -> str:
    """Why ``host`` reaches no customer ("this machine", "an example domain"), or ""."""
    host = host.lower().strip().rstrip(".")
    if not host or host in _LOCAL_HOSTS or host.endswith(".localhost") or "." not in host:
        return "this machine"
    if any(host == d or host.endswith("." + d) for d in _EXAMPLE_DOMAINS):
        return "an example domain"
    return ""


def _unreachable(url: str) -> str:
    """Why customers could not follow ``url``, or "" when they could."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return "it is not an https:// address"
    where = _nowhere(parts.hostname or "")
    if where == "this machine":
        return "it points at this machine"
    if where:
        return "it is an example address"
    return ""


@register(Tags.security, deploy=True)
def messaging_settings_check(app_configs=None, **kwargs):
    problems = []
    for setting, what, code in (
        ("OMNI_SITE_URL", "tracked links, unsubscribe and pickup pages in messages", "omni.W001"),
        ("OMNI_SHOP_URL", "cart and product links in messages", "omni.W002"),
    ):
        url = getattr(settings, setting)
        why = _unreachable(url)
        if why:
            problems.append(
                Warning(
                    f"{setting} is {url!r}: {why}, and {what} use it.",
                    hint=f"Set {setting} to the public https:// address (see .env.example).",
                    id=code,
                )
            )
    if settings.EMAIL_BACKEND.endswith(_NOT_SENDING):
        problems.append(
            Warning(
                f"Email is written by {settings.EMAIL_BACKEND}, not sent.",
                hint="Set EMAIL_URL to the SMTP server, e.g. "
                "smtp+tls://user:password@smtp.example.com:587 (see docs/deployment.md).",
                id="omni.W003",
            )
        )
    if settings.OMNI_MESSAGE_GATEWAY == "local":
        problems.append(
            Warning(
                "SMS, push and social messages are written to the local outbox "
                f"({settings.OMNI_LOCAL_OUTBOX_DIR}), not sent.",
                hint="Set OMNI_MESSAGE_GATEWAY=http with OMNI_GATEWAY_URL and "
                "OMNI_GATEWAY_SECRET (see docs/deployment.md).",
                id="omni.W004",
            )
        )
    if _nowhere(settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].rstrip(">")):
        problems.append(
            Warning(
                f"Email is sent from {settings.DEFAULT_FROM_EMAIL!r}, an address mail servers "
                "refuse or customers cannot answer.",
                hint="Set OMNI_EMAIL_FROM, e.g. 'Shop <hello@shop.fr>'.",
                id="omni.W005",
            )
        )
    return problems
