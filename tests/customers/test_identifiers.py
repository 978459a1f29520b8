"""Identifiers as channels send them, normalised to the one stored form."""

import pytest

from customers.identifiers import (
    KINDS,
    MAX_LENGTH,
    Identifier,
    guess_identifiers,
    normalize,
    parse_identifiers,
)


@pytest.mark.parametrize(
    "raw",
    ["Ana@Example.com", "  ANA@EXAMPLE.COM ", "ana@example.com", "aNa@eXaMpLe.CoM"],
)
def test_emails_are_case_folded_and_trimmed(raw):
    assert normalize("email", raw) == "ana@example.com"


@pytest.mark.parametrize("raw", ["ana", "ana@", "@example.com", "ana@@example.com", "ana example"])
def test_malformed_emails_are_refused(raw):
    with pytest.raises(ValueError) as error:
        normalize("email", raw)
    assert str(error.value) == f"{raw!r} is not an email address."


@pytest.mark.parametrize(
    "raw",
    [
        "06 12 34 56 78",
        "0612345678",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "+33 6 12 34 56 78",
        "+33612345678",
        "0033612345678",
        "+33 (0)6 12 34 56 78",
    ],
)
def test_french_phone_formats_become_e164(raw):
    assert normalize("phone", raw) == "+33612345678"


def test_foreign_numbers_keep_their_country():
    assert normalize("phone", "+44 20 7946 0958") == "+442079460958"
    assert normalize("phone", "+1 202-555-0143") == "+12025550143"


def test_a_phone_number_may_arrive_as_a_number():
    assert normalize("phone", 612345678) == "+33612345678"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0612", "'0612' is not a valid phone number."),
        ("06 12 34 56 7", "'06 12 34 56 7' is not a valid phone number."),
        ("+33 1", "'+33 1' is not a phone number."),
        ("abc", "'abc' is not a phone number."),
        ("12345678901234567890", "'12345678901234567890' is not a phone number."),
    ],
)
def test_invalid_phone_numbers_are_refused(raw, message):
    with pytest.raises(ValueError) as error:
        normalize("phone", raw)
    assert str(error.value) == message


@pytest.mark.parametrize("raw", ["ab 12-34", "AB1234", "ab-12 34", " AB  12--34 ", "a-b-1-2-3-4"])
def test_loyalty_cards_lose_separators_and_case(raw):
    assert normalize("loyalty_card", raw) == "AB1234"


@pytest.mark.parametrize("raw", ["-", " - - ", "--"])
def test_a_loyalty_card_of_separators_only_is_refused(raw):
    with pytest.raises(ValueError) as error:
        normalize("loyalty_card", raw)
    assert str(error.value) == "The value is empty."


def test_social_handles_need_their_network():
    assert normalize("social_handle", "Instagram:@Ana_B") == "instagram:ana_b"
    assert normalize("social_handle", "@Ana_B", network="Instagram") == "instagram:ana_b"
    assert normalize("social_handle", "ana", network=" tiktok ") == "tiktok:ana"
    with pytest.raises(ValueError) as error:
        normalize("social_handle", "@ana")
    assert str(error.value) == "A social handle needs its network, e.g. instagram:@ana."


def test_social_handles_refuse_bad_networks_and_empty_handles():
    with pytest.raises(ValueError) as error:
        normalize("social_handle", "@ana", network="insta gram")
    assert (
        str(error.value) == "'insta gram' is not a network name (letters, digits, '.', '-', '_')."
    )
    with pytest.raises(ValueError) as error:
        normalize("social_handle", "instagram:@")
    assert str(error.value) == "The handle is empty."


def test_devices_are_lower_cased_and_opaque_ids_kept_as_sent():
    assert normalize("app_device", " DEV-AbC ") == "dev-abc"
    assert normalize("web_cookie", " CkAbC ") == "CkAbC"
    assert normalize("pos_customer_id", "Pos-0042") == "Pos-0042"
    assert normalize("pos_customer_id", 42) == "42"


def test_too_long_values_are_refused():
    assert normalize("web_cookie", "c" * MAX_LENGTH) == "c" * MAX_LENGTH
    with pytest.raises(ValueError) as error:
        normalize("web_cookie", "c" * (MAX_LENGTH + 1))
    assert str(error.value) == "At most 255 characters."
    with pytest.raises(ValueError) as error:
        normalize("email", "a" * 250 + "@example.com")
    assert str(error.value) == "At most 255 characters."


def test_unknown_kinds_empty_and_non_text_values_are_refused():
    with pytest.raises(ValueError) as error:
        normalize("fax", "123")
    assert str(error.value) == (
        "Unknown identifier kind 'fax'; one of: email, phone, loyalty_card, pos_customer_id, "
        "app_device, social_handle, web_cookie."
    )
    for value in ("", "   ", None):
        with pytest.raises(ValueError) as error:
            normalize("email", value if value is not None else "")
        assert str(error.value) == "The value is empty."
    for value in (None, True, 1.5, ["a@b.co"], {"v": 1}):
        with pytest.raises(ValueError) as error:
            normalize("email", value)
        assert str(error.value) == "The value must be text."


@pytest.mark.parametrize("kind", KINDS)
def test_a_nul_character_is_refused_in_every_kind(kind):
    # PostgreSQL text cannot hold NUL: refused here rather than by the database (a 500).
    for value in ("P\x00", "\x00", "ana\x00@example.com", "instagram:@a\x00"):
        with pytest.raises(ValueError) as error:
            normalize(kind, value)
        assert str(error.value) == "The value contains a NUL character.", (kind, value)
    assert guess_identifiers("P\x00") == []


def test_parse_identifiers_normalises_and_drops_repeats():
    found, errors = parse_identifiers(
        [
            {"kind": "email", "value": "Ana@Example.com"},
            {"kind": "phone", "value": "06 12 34 56 78", "verified": True},
            {"kind": "email", "value": "ANA@example.com"},
            {"kind": "phone", "value": "+33612345678"},
            {"kind": "social_handle", "value": "@Ana", "network": "Instagram"},
        ]
    )
    assert errors == {}
    assert found == [
        Identifier("email", "ana@example.com", False),
        Identifier("phone", "+33612345678", True),
        Identifier("social_handle", "instagram:ana", False),
    ]


def test_parse_identifiers_keeps_verified_when_a_repeat_says_so():
    found, errors = parse_identifiers(
        [
            {"kind": "email", "value": "ana@example.com"},
            {"kind": "email", "value": "Ana@Example.com", "verified": True},
        ]
    )
    assert errors == {}
    assert found == [Identifier("email", "ana@example.com", True)]


def test_parse_identifiers_reports_errors_by_index():
    found, errors = parse_identifiers(
        [
            {"kind": "email", "value": "ana@example.com"},
            "ana@example.com",
            {"kind": "fax", "value": "1"},
            {"kind": "phone", "value": "0612"},
            {"kind": "social_handle", "value": "@ana"},
            {"kind": "phone"},
            {"kind": "web_cookie", "value": "x" * 256},
            {"kind": "loyalty_card", "value": "1234", "verified": "no"},
            {"kind": ["email"], "value": "a@b.co"},
            {"kind": "loyalty_card", "value": " - "},
        ]
    )
    assert found == [Identifier("email", "ana@example.com", False)]
    assert errors == {
        "identifiers": {
            "1": ["Must be an object with kind and value."],
            "2": [
                "Unknown identifier kind 'fax'; one of: email, phone, loyalty_card, "
                "pos_customer_id, app_device, social_handle, web_cookie."
            ],
            "3": ["'0612' is not a valid phone number."],
            "4": ["A social handle needs its network, e.g. instagram:@ana."],
            "5": ["The value is empty."],
            "6": ["At most 255 characters."],
            "7": ["verified must be true or false."],
            "8": [
                "Unknown identifier kind ['email']; one of: email, phone, loyalty_card, "
                "pos_customer_id, app_device, social_handle, web_cookie."
            ],
            "9": ["The value is empty."],
        }
    }


@pytest.mark.parametrize("raw", [None, [], {}, "ana@example.com", {"kind": "email"}])
def test_parse_identifiers_needs_a_non_empty_list(raw):
    assert parse_identifiers(raw) == (
        [],
        {"identifiers": ["At least one identifier ({kind, value})."]},
    )


def test_guess_identifiers_from_an_email():
    assert guess_identifiers(" Ana@Example.com ") == [
        ("email", "ana@example.com"),
        ("loyalty_card", "ANA@EXAMPLE.COM"),
        ("pos_customer_id", "Ana@Example.com"),
        ("app_device", "ana@example.com"),
        ("web_cookie", "Ana@Example.com"),
    ]


def test_guess_identifiers_from_a_phone_number_and_a_handle():
    assert guess_identifiers("06 12 34 56 78") == [
        ("phone", "+33612345678"),
        ("loyalty_card", "0612345678"),
        ("pos_customer_id", "06 12 34 56 78"),
        ("app_device", "06 12 34 56 78"),
        ("web_cookie", "06 12 34 56 78"),
    ]
    assert ("social_handle", "instagram:ana") in guess_identifiers("instagram:@Ana")


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_guess_identifiers_of_nothing_is_nothing(raw):
    assert guess_identifiers(raw) == []


def test_every_kind_is_known():
    assert KINDS == (
        "email",
        "phone",
        "loyalty_card",
        "pos_customer_id",
        "app_device",
        "social_handle",
        "web_cookie",
    )
