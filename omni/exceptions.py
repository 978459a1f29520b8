"""The one family of domain errors.

Each carries a message for people, a stable ``code`` for programs and ``extra`` details. The API
maps them to its JSON error shape; the admin and store pages show the message.
"""


class OmniError(Exception):
    code = "error"
    status_code = 400

    def __init__(self, message: str, *, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra or {}

    def __str__(self) -> str:
        return self.message


class ValidationFailed(OmniError):
    """Input that breaks a rule. ``extra`` maps fields (or rows) to their errors."""

    code = "validation_error"
    status_code = 400


class NotFound(OmniError):
    code = "not_found"
    status_code = 404


class Conflict(OmniError):
    """The request is valid but clashes with the current state of the data."""

    code = "conflict"
    status_code = 409


class Unprocessable(OmniError):
    code = "unprocessable"
    status_code = 422


class InsufficientStock(Conflict):
    """Not enough stock for a reservation; ``extra["lines"]`` says how much each short line has."""

    code = "insufficient_stock"
