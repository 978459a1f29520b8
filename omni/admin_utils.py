"""Helpers shared by the admins of every app."""

from django.contrib import messages
from django.http import HttpResponseRedirect

from omni.exceptions import OmniError


class ServiceAdminMixin:
    """Admin whose saves call services: a refused write shows its message and changes nothing.

    Django's change view runs in a transaction, so an ``OmniError`` raised by a service while
    saving the object or its inlines rolls back everything the save had done.
    """

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except OmniError as exc:
            details = "; ".join(
                f"{field}: {' '.join(map(str, errs)) if isinstance(errs, list) else errs}"
                for field, errs in exc.extra.items()
                if field != "errors"
            )
            self.message_user(
                request,
                f"Nothing was saved. {exc.message}" + (f" ({details})" if details else ""),
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())


def choices_evaluated_once(formfield):
    """Evaluate a foreign-key form field's choices now, once, instead of once per form.

    Every form of an inline formset deep-copies its fields, and a ``ModelChoiceField`` copy
    queries its choices again when rendered: one query per inline row and field. Fixing the
    choices as a list on the formset's base field is shared by all its forms; submitted values
    are still validated against the queryset.
    """
    if formfield is not None and getattr(formfield, "queryset", None) is not None:
        formfield.choices = list(formfield.choices)
    return formfield
