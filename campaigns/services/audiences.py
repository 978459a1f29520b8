"""Retargeting audiences for ad platforms: hashed emails and phone numbers as CSV.

The file has a header and one row per customer::

    email_sha256,phone_sha256
    8a3c...e1,5d0f...9b
    c02e...47,

each value the lower-case hex SHA-256 of the customer's normalised identifier, the format
Google Ads Customer Match and Meta custom audiences take for "hashed" uploads:

- email: trimmed and lower-cased (``Identity`` stores them case-folded already);
- phone: E.164 with its ``+`` and country code (``+33612345678``), as ``Identity`` stores it.
  Google hashes this form. Meta asks for the digits without the ``+`` before hashing, so for
  Meta upload the email column (or map the phone column knowing its hashes will not match).

One row per customer: her main email and main phone (verified first, then the oldest, as
``customers.selectors.main_identity``); either cell may be empty, and customers with neither
are left out. Only customers who were not erased and whose current consent on an active
messaging channel of kind ``ads_audience`` is an opt-in are included: a retargeting audience
is marketing, and the ads channel's consent is the customer's say on it (no such channel, or no
opt-in on it, gives a file with its header only).

The audience is a segment's members, or the abandoned-cart audience: customers with an open
cart holding at least one line and idle for at least ``min_idle_minutes``. The query is one
set-based statement read in batches (``iterator(chunk_size=...)``); nothing holds the whole
audience in memory.
"""

import csv
import hashlib
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from customers.models import ConsentState, ConsentStatus, Customer, IdentityKind, Segment
from customers.segments import segment_queryset
from customers.selectors import main_identity
from omni.exceptions import ValidationFailed
from omni.models import ChannelKind
from orders.models import Cart, CartLine, CartStatus

HEADER = ("email_sha256", "phone_sha256")
CHUNK_SIZE = 2000
MAX_IDLE_MINUTES = 60 * 24 * 365


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hashed_email(email: str | None) -> str:
    email = (email or "").strip().lower()
    return sha256_hex(email) if email else ""


def hashed_phone(phone: str | None) -> str:
    phone = (phone or "").strip()
    return sha256_hex(phone) if phone else ""


def ads_consented() -> Exists:
    """The customer's current consent on an active ads-audience channel is an opt-in."""
    return Exists(
        ConsentState.objects.filter(
            customer_id=OuterRef("pk"),
            channel__kind=ChannelKind.ADS_AUDIENCE,
            channel__is_active=True,
            status=ConsentStatus.OPTED_IN,
        )
    )


def abandoned_cart_customers(*, min_idle_minutes: int, now=None):
    """Customers (not erased) with an open cart holding lines, idle at least that long."""
    now = now or timezone.now()
    carts = Cart.objects.filter(
        customer_id=OuterRef("pk"),
        status=CartStatus.OPEN,
        last_activity_at__lte=now - timedelta(minutes=min_idle_minutes),
    ).filter(Exists(CartLine.objects.filter(cart_id=OuterRef("pk"))))
    return Customer.objects.filter(erased_at__isnull=True).filter(Exists(carts))


def audience_customers(
    *, segment: Segment | None = None, abandoned_carts: bool = False, min_idle_minutes: int = 60
):
    """The consented customers of the audience, as a queryset (checked as ``audience_csv``)."""
    if (segment is None) == (not abandoned_carts):
        raise ValidationFailed(
            "Export either a segment or the abandoned-cart audience.",
            code="audience_choice",
            extra={
                "non_field_errors": [
                    "Give a segment or abandoned carts, not both."
                    if segment is not None
                    else "Give a segment or abandoned carts."
                ]
            },
        )
    if isinstance(min_idle_minutes, bool) or not isinstance(min_idle_minutes, int):
        raise ValidationFailed(
            "The idle time is a whole number of minutes.",
            extra={"min_idle_minutes": ["A whole number of minutes."]},
        )
    if not 0 <= min_idle_minutes <= MAX_IDLE_MINUTES:
        raise ValidationFailed(
            f"The idle time is 0 to {MAX_IDLE_MINUTES} minutes.",
            extra={"min_idle_minutes": [f"0 to {MAX_IDLE_MINUTES}."]},
        )
    if segment is not None:
        members = segment_queryset(segment)
    else:
        members = abandoned_cart_customers(min_idle_minutes=min_idle_minutes)
    return members.filter(ads_consented())


def audience_csv(
    *, segment: Segment | None = None, abandoned_carts: bool = False, min_idle_minutes: int = 60
) -> Iterator[str]:
    """The audience as CSV lines (header first), for streaming to a response or a file.

    The choice is checked here, before the first line: a bad request is refused with
    ``ValidationFailed`` rather than breaking off a response that has started.
    """
    customers = audience_customers(
        segment=segment, abandoned_carts=abandoned_carts, min_idle_minutes=min_idle_minutes
    )
    rows = (
        customers.annotate(
            email=main_identity(IdentityKind.EMAIL), phone=main_identity(IdentityKind.PHONE)
        )
        .filter(Q(email__isnull=False) | Q(phone__isnull=False))
        .order_by("pk")
        .values_list("email", "phone")
    )
    return _lines(rows)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _lines(rows) -> Iterator[str]:
    writer = csv.writer(_Echo(), lineterminator="\n")
    yield writer.writerow(HEADER)
    for email, phone in rows.iterator(chunk_size=CHUNK_SIZE):
        yield writer.writerow((hashed_email(email), hashed_phone(phone)))
