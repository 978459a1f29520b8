import pytest

from customers.identifiers import Identifier, normalize
from omni.models import ChannelKind
from tests.factories import ChannelFactory


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
    return {code: ChannelFactory(code=code, name=code.title(), kind=kind) for code, kind in specs.items()}


@pytest.fixture
def ident():
    """``ident("email", "Ana@Example.com")`` -> a normalised Identifier."""

    def _ident(kind, value, verified=False):
        return Identifier(kind, normalize(kind, value), verified)

    return _ident
