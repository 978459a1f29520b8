"""Forms of the store pages: they parse what staff type or scan, nothing more. The rules (what
may be received, counted or recorded) are the services' and come back as ``OmniError``s that
the views show on these forms."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from omni.models import Channel, ChannelKind

BIG = {"class": "input"}


class StoreSignInForm(AuthenticationForm):
    """Django's sign-in form, with fields sized for a tablet."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(
            {**BIG, "autocapitalize": "none", "autocomplete": "username"}
        )
        self.fields["password"].widget.attrs.update({**BIG, "autocomplete": "current-password"})


class StoreSwitchForm(forms.Form):
    location = forms.CharField(max_length=40)


class SearchForm(forms.Form):
    """One search box (stock: SKU, barcode or title; customers: phone, email, card or name)."""

    q = forms.CharField(
        max_length=200,
        required=False,
        strip=True,
        widget=forms.TextInput(
            attrs={**BIG, "type": "search", "autofocus": True, "autocomplete": "off"}
        ),
    )


def _quantity_field(label: str, initial: int | None = None) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        initial=initial,
        error_messages={"invalid": "Enter a whole number.", "required": "Enter a quantity."},
        widget=forms.NumberInput(attrs={"class": "input qty", "inputmode": "numeric"}),
    )


class TransferReceiveForm(forms.Form):
    """A received quantity per line of ``transfer`` (default: what was shipped), by SKU."""

    def __init__(self, *args, transfer_lines, **kwargs):
        super().__init__(*args, **kwargs)
        self.lines = list(transfer_lines)
        for line in self.lines:
            self.fields[self.field_name(line.variant.sku)] = _quantity_field(
                line.variant.sku, initial=line.shipped_quantity
            )

    @staticmethod
    def field_name(sku: str) -> str:
        return f"qty_{sku}"

    def rows(self):
        """Each line with its bound field, for the template."""
        return [(line, self[self.field_name(line.variant.sku)]) for line in self.lines]

    def quantities(self) -> dict[str, int]:
        return {
            line.variant.sku: self.cleaned_data[self.field_name(line.variant.sku)]
            for line in self.lines
        }


class CountLineForm(forms.Form):
    """One scanned or typed item of a count: its SKU or barcode and how many were counted."""

    code = forms.CharField(
        label="SKU or barcode",
        max_length=64,
        widget=forms.TextInput(
            attrs={**BIG, "autofocus": True, "autocomplete": "off", "autocapitalize": "characters"}
        ),
    )
    quantity = forms.IntegerField(
        initial=1,
        min_value=0,
        error_messages={"invalid": "Enter a whole number.", "min_value": "0 or more."},
        widget=forms.NumberInput(attrs={"class": "input qty", "inputmode": "numeric"}),
    )


class CountSubmitForm(forms.Form):
    """The count so far (a quantity per SKU, editable) and when it was counted."""

    counted_at = forms.DateTimeField(
        label="Counted at (store time; empty: now)",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"class": "input", "type": "datetime-local"}),
    )

    def __init__(self, *args, skus, **kwargs):
        super().__init__(*args, **kwargs)
        self.skus = list(skus)
        for sku in self.skus:
            self.fields[self.field_name(sku)] = _quantity_field(sku)

    @staticmethod
    def field_name(sku: str) -> str:
        return f"qty_{sku}"

    def rows(self):
        return [(sku, self[self.field_name(sku)]) for sku in self.skus]

    def lines(self) -> list[dict]:
        return [
            {"sku": sku, "quantity": self.cleaned_data[self.field_name(sku)]} for sku in self.skus
        ]


class ConsentForm(forms.Form):
    """An opt-in or opt-out the customer gives at the counter, for one messaging channel."""

    channel = forms.CharField(max_length=40)
    status = forms.CharField(max_length=20)


class ChannelChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.name


class NoteForm(forms.Form):
    """What the customer asked or said at the counter, added to her conversation."""

    channel = ChannelChoiceField(
        queryset=Channel.objects.filter(kind=ChannelKind.STORE_POS, is_active=True).order_by(
            "code"
        ),
        to_field_name="code",
        empty_label=None,
        error_messages={"invalid_choice": "Choose a store channel."},
        widget=forms.Select(attrs={"class": "input"}),
    )
    body = forms.CharField(
        label="Note",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"class": "input", "rows": 3}),
    )
