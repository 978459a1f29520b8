"""Catalog identifiers: SKU, GTIN and currency normalisation and validation."""

import string

import pytest
from django.core.exceptions import ValidationError
from hypothesis import example, given
from hypothesis import strategies as st

from catalog.validators import (
    SKU_DB_REGEX,
    SKU_RE,
    gtin_check_digit,
    normalize_currency,
    normalize_gtin,
    normalize_sku,
    validate_currency,
    validate_gtin,
    validate_sku,
)

SKU_CHARS = string.ascii_letters + string.digits + "._-"
digits = st.text(alphabet=string.digits, min_size=1, max_size=1)


def _code(validator, value) -> str:
    with pytest.raises(ValidationError) as info:
        validator(value)
    return info.value.code


# --- GTIN -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gtin",
    [
        "96385074",  # EAN-8
        "036000291452",  # UPC-A
        "4006381333931",  # EAN-13
        "5901234123457",  # EAN-13
        "00012345600012",  # GTIN-14
        "10614141000415",  # GTIN-14
    ],
)
def test_known_gtins_have_the_gs1_check_digit(gtin):
    assert gtin_check_digit(gtin[:-1]) == int(gtin[-1])
    validate_gtin(gtin)


def test_wrong_check_digit_is_refused_with_the_expected_digit():
    with pytest.raises(ValidationError) as info:
        validate_gtin("4006381333932")
    assert info.value.code == "gtin_check_digit"
    assert info.value.messages == ["GTIN 4006381333932 has a wrong check digit (expected 1)."]


@pytest.mark.parametrize(
    "value",
    ["", "1234567", "123456789", "1234567890", "12345678901", "123456789012345", "40063813339X1"],
)
def test_gtin_of_a_wrong_length_or_with_letters_is_refused(value):
    assert _code(validate_gtin, value) == "gtin_invalid"


@pytest.mark.parametrize(
    "value",
    [
        "٤٠٠٦٣٨١٣٣٣٩٣١",  # Arabic-Indic digits: str.isdigit() is True, the database refuses them
        "4006381333９31",  # a full-width digit
        "400638133393²",  # a superscript two: isdigit() is True, but int() fails
    ],
)
def test_gtin_with_non_ascii_digits_is_refused(value):
    assert _code(validate_gtin, value) == "gtin_invalid"


@given(
    body=st.sampled_from([7, 11, 12, 13]).flatmap(
        lambda n: st.text(alphabet=string.digits, min_size=n, max_size=n)
    )
)
def test_any_body_with_its_check_digit_is_a_valid_gtin(body):
    check = gtin_check_digit(body)
    assert 0 <= check <= 9
    validate_gtin(body + str(check))


@given(
    gtin=st.sampled_from([7, 11, 12, 13])
    .flatmap(lambda n: st.text(alphabet=string.digits, min_size=n, max_size=n))
    .map(lambda body: body + str(gtin_check_digit(body))),
    data=st.data(),
)
def test_every_single_digit_error_in_a_gtin_is_detected(gtin, data):
    position = data.draw(st.integers(min_value=0, max_value=len(gtin) - 1))
    wrong = data.draw(digits.filter(lambda d: d != gtin[position]))
    typo = gtin[:position] + wrong + gtin[position + 1 :]
    assert _code(validate_gtin, typo) == "gtin_check_digit"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("4006381333931", "4006381333931"),
        (" 400-6381 333931 ", "4006381333931"),
        ("4006381\t333931\n", "4006381333931"),
    ],
)
def test_normalize_gtin(value, expected):
    assert normalize_gtin(value) == expected


# --- SKU --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc-1", "ABC-1"),
        ("  ts-001-m ", "TS-001-M"),
        ("red  shirt\tm", "RED-SHIRT-M"),
        ("A.B_C-D", "A.B_C-D"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_sku(value, expected):
    assert normalize_sku(value) == expected


@given(st.text())
@example("ß")
@example("ﬀ x")
@example(" \u00a0a\u2003b ")
def test_normalize_sku_is_idempotent_upper_case_and_without_whitespace(value):
    sku = normalize_sku(value)
    assert normalize_sku(sku) == sku
    assert sku == sku.upper()
    assert not any(ch.isspace() for ch in sku)


@given(st.text())
def test_a_normalised_sku_is_never_refused_as_not_normalised(value):
    sku = normalize_sku(value)
    try:
        validate_sku(sku)
    except ValidationError as exc:
        assert exc.code == "sku_invalid"
    else:
        assert SKU_RE.fullmatch(sku)


@given(
    first=st.sampled_from(string.ascii_letters + string.digits),
    rest=st.text(alphabet=SKU_CHARS, max_size=63),
)
def test_any_sku_of_letters_digits_and_separators_is_valid_once_normalised(first, rest):
    sku = normalize_sku(first + rest)
    assert sku == (first + rest).upper()
    validate_sku(sku)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("abc-1", "sku_not_normalised"),
        ("A B", "sku_not_normalised"),
        (" ABC", "sku_not_normalised"),
        ("ABC\n", "sku_not_normalised"),
        ("", "sku_invalid"),
        ("-ABC", "sku_invalid"),
        (".ABC", "sku_invalid"),
        ("AB/C", "sku_invalid"),
        ("ÀB", "sku_invalid"),
        ("A" * 65, "sku_invalid"),
    ],
)
def test_invalid_sku_is_refused_with_its_code(value, code):
    assert _code(validate_sku, value) == code


def test_sku_of_64_characters_is_valid():
    validate_sku("A" * 64)


def test_python_and_database_sku_rules_are_the_same():
    assert SKU_RE.pattern == SKU_DB_REGEX


# --- Currency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(" eur ", "EUR"), ("", ""), (None, "")])
def test_normalize_currency(value, expected):
    assert normalize_currency(value) == expected


@pytest.mark.parametrize("value", ["", "eur", "EU", "EURO", "E1R", "EUR\n", None])
def test_invalid_currency_is_refused(value):
    assert _code(validate_currency, value) == "currency_invalid"


def test_valid_currency():
    validate_currency("GBP")
