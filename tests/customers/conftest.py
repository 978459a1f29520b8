from datetime import UTC, datetime, timedelta

import pytest

from customers.identifiers import Identifier, normalize
from customers.models import Customer, Identity
from omni.models import ChannelKind
from tests.factories import ChannelFactory

# A fixed past moment the service tests build their data around.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(days=0, hours=0, minutes=0):
    """``T0`` moved by the given amounts."""
    return T0 + timedelta(days=days, hours=hours, minutes=minutes)


def iso(moment: datetime) -> str:
    """A moment as ``field_times`` stores it (UTC ISO 8601)."""
    return moment.astimezone(UTC).isoformat()


@pytest.fixture
def channels(db):
    """Sales and messaging channels (get_or_create: transactional tests flush the seeded ones)."""
    specs = {
        "web": ChannelKind.WEB,
        "app": ChannelKind.APP,
        "pos": ChannelKind.STORE_POS,
        "social": ChannelKind.SOCIAL,
        "email": ChannelKind.EMAIL,
        "sms": ChannelKind.SMS,
        "push": ChannelKind.PUSH,
        "social-dm": ChannelKind.SOCIAL_DM,
    }
    return {
        code: ChannelFactory(code=code, name=code.title(), kind=kind)
        for code, kind in specs.items()
    }


@pytest.fixture
def ident():
    """``ident("email", "Ana@Example.com")`` -> a normalised Identifier."""

    def _ident(kind, value, verified=False):
        return Identifier(kind, normalize(kind, value), verified)

    return _ident


@pytest.fixture
def make_customer(db):
    """``make_customer(("email", "a@x.io"), created_at=..., city="Lyon")``: a customer row with
    these identities, written directly (the state a test starts from, not a service call)."""

    def _make(*identities, created_at=None, **fields):
        created_at = created_at or T0
        customer = Customer.objects.create(created_at=created_at, **fields)
        for kind, value in identities:
            Identity.objects.create(
                customer=customer,
                kind=kind,
                value=normalize(kind, value),
                source="setup",
                first_seen_at=created_at,
            )
        return customer

    return _make


def keys_of(customer) -> set[tuple[str, str]]:
    """The ``(kind, value)`` of every identity of the customer."""
    return set(Identity.objects.filter(customer=customer).values_list("kind", "value"))
