"""Filters shared by the API's filtersets: booleans that refuse what they do not understand."""

import django_filters
from django import forms
from django.core.exceptions import ValidationError

from omni.models import Channel

TRUE_VALUES = ("true", "True", "1")
FALSE_VALUES = ("false", "False", "0")


class StrictBooleanField(forms.NullBooleanField):
    """``true``/``false`` (or ``1``/``0``); anything else is an error, not an ignored filter."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value is True or value in TRUE_VALUES:
            return True
        if value is False or value in FALSE_VALUES:
            return False
        raise ValidationError("Enter true or false.", code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class ChannelFilter(django_filters.FilterSet):
    is_active = BooleanFilter()

    class Meta:
        model = Channel
        fields = ["kind", "is_active"]
