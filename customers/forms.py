"""Admin forms of the customers app. They parse and normalise input (identifiers are stored
normalised, so a form shows a mistyped email as a field error); the rules (an identifier that
belongs to someone else, a blocked value) live in ``customers.services``, which every save
calls: the admin shows a service's refusal on the form that held the values."""

from django import forms
from django.contrib.admin import widgets
from django.db.models import Q

from customers.identifiers import Identifier, normalize
from customers.models import (
    BlockedIdentifier,
    ConsentStatus,
    Customer,
    Identity,
    IdentityKind,
)
from customers.services.profile import EDITABLE
from omni.models import MESSAGING_KINDS, Channel

# The identifiers the add form asks for, in order: (form field, identity kind).
ADD_IDENTIFIERS = (
    ("email", IdentityKind.EMAIL),
    ("phone", IdentityKind.PHONE),
    ("loyalty_card", IdentityKind.LOYALTY_CARD),
)


def _normalized(kind: str, value: str) -> str:
    try:
        return normalize(kind, value)
    except ValueError as error:
        raise forms.ValidationError(str(error)) from None


class CustomerAddForm(forms.ModelForm):
    """A new customer: her profile and at least one identifier (each normalised)."""

    email = forms.CharField(required=False, max_length=255)
    phone = forms.CharField(
        required=False,
        max_length=64,
        help_text="Any format: 06 12 34 56 78, +33 6 12 34 56 78, ...",
    )
    loyalty_card = forms.CharField(required=False, max_length=255)

    class Meta:
        model = Customer
        fields = list(EDITABLE)

    def _clean_identifier(self, name: str, kind: str) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        if not value:
            return ""
        return _normalized(kind, value)

    def clean_email(self):
        return self._clean_identifier("email", IdentityKind.EMAIL)

    def clean_phone(self):
        return self._clean_identifier("phone", IdentityKind.PHONE)

    def clean_loyalty_card(self):
        return self._clean_identifier("loyalty_card", IdentityKind.LOYALTY_CARD)

    def clean(self):
        data = super().clean()
        data["identifiers"] = [
            Identifier(kind, data[name]) for name, kind in ADD_IDENTIFIERS if data.get(name)
        ]
        given = any(self.data.get(self.add_prefix(name)) for name, _ in ADD_IDENTIFIERS)
        if not given:
            raise forms.ValidationError(
                "Give at least one identifier: an email, a phone number or a loyalty card."
            )
        return data


class IdentityInlineForm(forms.ModelForm):
    """A new identifier typed on the customer page (existing ones are read-only), normalised;
    ``identity_add`` refuses one that is taken or blocked.

    The value is a form field outside ``Meta.fields``, so the model's validation leaves it
    out: whether it is free is the service's to say, under the value's lock and naming the
    customer who holds it, where the model's (kind, value) constraint would only say "already
    exists". (The inline builds its formset with these ``Meta.fields``.)"""

    value = forms.CharField(
        max_length=Identity._meta.get_field("value").max_length,
        help_text=Identity._meta.get_field("value").help_text,
    )

    class Meta:
        model = Identity
        fields = ["kind", "verified"]

    def clean(self):
        data = super().clean()
        kind, value = data.get("kind"), data.get("value")
        if self.instance.pk or not kind or not value:
            return data
        try:
            data["value"] = _normalized(kind, value)
        except forms.ValidationError as error:
            self.add_error("value", error)
        return data


class ConsentRecordForm(forms.Form):
    """An opt-in or opt-out the customer gave staff (recorded with source "admin")."""

    channel = forms.ModelChoiceField(
        queryset=Channel.objects.messaging().active().order_by("code"),
        empty_label="— messaging channel —",
    )
    status = forms.ChoiceField(choices=ConsentStatus.choices)
    occurred_at = forms.SplitDateTimeField(
        label="When the customer said so",
        required=False,
        widget=widgets.AdminSplitDateTime,
        help_text="Empty: now.",
    )
    proof = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="What backs it: the signed form's reference, the email received, ...",
    )


class ReasonForm(forms.Form):
    """The reason kept in the audit row of a merge, an export or an erasure."""

    reason = forms.CharField(max_length=200, required=False, widget=forms.TextInput({"size": 60}))

    def __init__(self, *args, required=False, initial_reason="", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = required
        self.fields["reason"].initial = initial_reason


class ConversationReplyForm(forms.Form):
    """A staff answer: the channel to send it on and its text. Empty or oversized bodies and
    inactive channels are refused by the service, which says why."""

    channel = forms.ModelChoiceField(queryset=Channel.objects.none(), required=False)
    body = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 5, "cols": 80}), strip=False
    )

    def __init__(self, *args, conversation, **kwargs):
        super().__init__(*args, **kwargs)
        # Messaging channels, and any channel the customer wrote on in this conversation
        # (a social commerce page she messaged through).
        used = conversation.messages.values("channel_id")
        self.fields["channel"].queryset = Channel.objects.filter(
            Q(is_active=True), Q(kind__in=MESSAGING_KINDS) | Q(pk__in=used)
        ).order_by("code")
        self.fields["channel"].empty_label = "— channel —"


class BlockedIdentifierForm(forms.ModelForm):
    """A value to block, typed as usual and stored normalised."""

    class Meta:
        model = BlockedIdentifier
        fields = ["kind", "value", "reason"]

    def clean(self):
        data = super().clean()
        kind, value = data.get("kind"), data.get("value")
        if kind and value:
            try:
                data["value"] = _normalized(kind, value)
            except forms.ValidationError as error:
                self.add_error("value", error)
        return data
