from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from omni.exceptions import ValidationFailed


def validation_details(exc: ValidationError) -> dict:
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for m in errors] for field, errors in exc.message_dict.items()}
    return {"non_field_errors": list(exc.messages)}


def clean_instance(instance: models.Model, *, what: str, exclude=None, unique=True) -> None:
    """Run the model's validators and constraints; raise ``ValidationFailed`` with details."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=unique, validate_constraints=unique)
    except ValidationError as exc:
        details = validation_details(exc)
        first = next(iter(details.items()))
        raise ValidationFailed(
            f"{what} is not valid: {first[0]}: {first[1][0]}", extra=details
        ) from exc


def to_decimal(value, *, field: str) -> Decimal:
    """``value`` as a finite ``Decimal``, or ``ValidationFailed`` on ``field``.

    ``Decimal("abc")`` raises ``InvalidOperation`` and ``Decimal("NaN") < 0`` does too, so input
    is checked here, before any comparison.
    """
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, TypeError, ValueError):
        result = None
    if result is None or not result.is_finite():
        raise ValidationFailed(f"{value!r} is not a number.", extra={field: ["Enter a number."]})
    return result


def save_new(instance: models.Model, *, field: str, message: str) -> None:
    """Insert ``instance``; a unique clash that a concurrent request won after our checks
    becomes the same ``ValidationFailed`` a sequential duplicate gets."""
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise ValidationFailed(message, extra={field: [message]}) from None
