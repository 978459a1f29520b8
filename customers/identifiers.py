"""Identifiers as channels send them, normalised to the one form ``Identity`` stores.

Emails are case-folded, phone numbers written in E.164 (``phonenumbers``; numbers without a
country code are read in ``OMNI_PHONE_REGION``), loyalty cards lose spaces and dashes, social
handles become ``network:handle``. A value that cannot be normalised (or that holds a NUL
character, which PostgreSQL text cannot store) raises ``ValueError`` with a message for people.
"""

import re
from collections import defaultdict
from dataclasses import dataclass

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Q

from omni.exceptions import ValidationFailed

from .models import IdentityKind

MAX_LENGTH = 255
KINDS = tuple(k.value for k in IdentityKind)
_NETWORK = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_CARD_SEPARATORS = re.compile(r"[\s-]+")


@dataclass(frozen=True, slots=True)
class Identifier:
    kind: str
    value: str
    verified: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.value)


def _email(value: str) -> str:
    value = value.strip()
    try:
        validate_email(value)
    except ValidationError:
        raise ValueError(f"{value!r} is not an email address.") from None
    return value.casefold()


def _phone(value: str) -> str:
    try:
        number = phonenumbers.parse(value, settings.OMNI_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{value!r} is not a phone number.") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _loyalty_card(value: str) -> str:
    return _CARD_SEPARATORS.sub("", value).upper()


def _social_handle(value: str, network: str | None) -> str:
    value = value.strip()
    if network is None:
        network, sep, value = value.partition(":")
        if not sep:
            raise ValueError("A social handle needs its network, e.g. instagram:@ana.")
    network = network.strip().lower()
    if not _NETWORK.match(network):
        raise ValueError(f"{network!r} is not a network name (letters, digits, '.', '-', '_').")
    handle = value.strip().lstrip("@").casefold()
    if not handle:
        raise ValueError("The handle is empty.")
    return f"{network}:{handle}"


def normalize(kind: str, value, *, network: str | None = None) -> str:
    """The stored form of ``value`` as an identifier of ``kind``; ``ValueError`` if it is not
    one."""
    if kind not in KINDS:
        raise ValueError(f"Unknown identifier kind {kind!r}; one of: {', '.join(KINDS)}.")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("The value must be text.")
    value = str(value).strip()
    if not value:
        raise ValueError("The value is empty.")
    if "\x00" in value:  # PostgreSQL text cannot hold it (opaque kinds would keep it)
        raise ValueError("The value contains a NUL character.")
    if kind == IdentityKind.EMAIL:
        result = _email(value)
    elif kind == IdentityKind.PHONE:
        result = _phone(value)
    elif kind == IdentityKind.LOYALTY_CARD:
        result = _loyalty_card(value)
    elif kind == IdentityKind.SOCIAL_HANDLE:
        result = _social_handle(value, network)
    elif kind == IdentityKind.APP_DEVICE:
        result = value.lower()
    else:  # POS customer ids and cookies are opaque: kept as sent
        result = value
    if not result:  # a loyalty card of separators only
        raise ValueError("The value is empty.")
    if len(result) > MAX_LENGTH:
        raise ValueError(f"At most {MAX_LENGTH} characters.")
    return result


def parse_identifiers(raw) -> tuple[list[Identifier], dict]:
    """Identifiers from API input: a list of ``{"kind", "value", "network"?, "verified"?}``.

    Returns the identifiers (repeats dropped; verified if any repeat says so) and the errors by
    index.
    """
    if not isinstance(raw, list) or not raw:
        return [], {"identifiers": ["At least one identifier ({kind, value})."]}
    found, errors, seen = [], {}, {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            errors[str(index)] = ["Must be an object with kind and value."]
            continue
        network = item.get("network")
        try:
            value = normalize(
                item.get("kind"),
                item.get("value", ""),
                network=str(network) if network not in (None, "") else None,
            )
        except ValueError as error:
            errors[str(index)] = [str(error)]
            continue
        verified = item.get("verified")
        verified = False if verified is None else verified
        if not isinstance(verified, bool):
            errors[str(index)] = ["verified must be true or false."]
            continue
        identifier = Identifier(item["kind"], value, verified)
        position = seen.get(identifier.key)
        if position is None:
            seen[identifier.key] = len(found)
            found.append(identifier)
        elif verified and not found[position].verified:
            found[position] = identifier
    return found, ({"identifiers": errors} if errors else {})


def identifiers_parse(raw) -> list[Identifier]:
    """``parse_identifiers`` for callers that refuse bad input whole: the identifiers, or
    ``ValidationFailed`` with every error by index."""
    identifiers, errors = parse_identifiers(raw)
    if errors:
        raise ValidationFailed("Some identifiers are invalid.", extra=errors)
    return identifiers


def guess_identifiers(text: str) -> list[tuple[str, str]]:
    """What a search box entry could be: an email, a phone number in any format, a loyalty card
    or another identifier, each normalised (for admin and store-page search)."""
    text = (text or "").strip()
    if not text:
        return []
    guesses = []
    for kind in KINDS:
        try:
            guesses.append((kind, normalize(kind, text)))
        except ValueError:
            continue
    return guesses


def keys_q(keys) -> Q:
    """The rows (``Identity``, ``BlockedIdentifier``) holding these ``(kind, value)`` pairs, as
    one condition per kind, so that PostgreSQL seeks the ``(kind, value)`` unique index (a test
    on the value alone scans the whole table). No keys match nothing."""
    by_kind = defaultdict(set)
    for kind, value in keys:
        by_kind[kind].add(value)
    condition = Q(pk__in=[])
    for kind in sorted(by_kind):
        condition |= Q(kind=kind, value__in=sorted(by_kind[kind]))
    return condition
