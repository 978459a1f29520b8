"""Admin forms of the catalog. They normalise input; the rules live in validators and services."""

import json

from django import forms
from django.contrib.admin.helpers import ActionForm

from catalog.feeds import FEED_FIELDS
from catalog.models import ChannelFeed, Product, Variant
from catalog.validators import normalize_currency, normalize_gtin, normalize_sku
from omni.models import Channel


class ChannelActionForm(ActionForm):
    """The changelist action bar with a channel to publish on or unpublish from."""

    channel = forms.ModelChoiceField(
        queryset=Channel.objects.sales().active(),
        required=False,
        empty_label="— channel —",
        to_field_name="code",
    )


class ProductForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = ["handle", "title", "description", "brand", "category", "attributes", "is_active"]

    def clean_attributes(self):
        # An emptied JSON box means "no attributes", not NULL (the column is NOT NULL).
        return self.cleaned_data.get("attributes") or {}


class VariantForm(forms.ModelForm):
    class Meta:
        model = Variant
        fields = ["sku", "gtin", "option_values", "weight_grams", "base_price", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["sku"].disabled = True
            self.fields["sku"].help_text = "The SKU identifies the item on every channel."

    def clean_sku(self):
        return normalize_sku(self.cleaned_data.get("sku"))

    def clean_gtin(self):
        return normalize_gtin(self.cleaned_data.get("gtin"))

    def clean_option_values(self):
        return self.cleaned_data.get("option_values") or {}


class ListingForm(forms.ModelForm):
    def clean_currency(self):
        return normalize_currency(self.cleaned_data.get("currency"))


class ChannelFeedForm(forms.ModelForm):
    fields_text = forms.CharField(
        label="Fields",
        required=False,
        help_text="Comma-separated, in order; empty for the default set. Available: "
        + ", ".join(FEED_FIELDS),
        widget=forms.TextInput(attrs={"size": 80}),
    )

    class Meta:
        model = ChannelFeed
        fields = ["channel", "format", "published_only"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["fields_text"].initial = ", ".join(self.instance.fields or [])

    def clean_fields_text(self):
        names = [n.strip() for n in self.cleaned_data["fields_text"].split(",") if n.strip()]
        unknown = [n for n in names if n not in FEED_FIELDS]
        if unknown:
            raise forms.ValidationError(
                f"Unknown field(s): {', '.join(unknown)}. Available: {', '.join(FEED_FIELDS)}."
            )
        if len(set(names)) != len(names):
            raise forms.ValidationError("A field is listed twice.")
        return names

    def save(self, commit=True):
        self.instance.fields = self.cleaned_data["fields_text"]
        return super().save(commit)


class CatalogImportForm(forms.Form):
    file = forms.FileField(help_text="A catalog CSV (UTF-8) in the export format.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError("The file is not UTF-8 text.") from exc


def pretty_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)
