"""Admin forms of inventory. They parse what staff type; the rules live in inventory.services."""

from django import forms
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.utils import timezone

from inventory.models import StockCount, Transfer


class LocationActionForm(ActionForm):
    """The location list's action bar, with the reason given to a count request."""

    reason = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "reason (count request)", "size": 28}),
    )


class StockAdjustForm(forms.Form):
    quantity = forms.IntegerField(
        label="Change (units)",
        help_text="Added to what each selected row holds: negative removes units (damaged, "
        "stolen), positive adds them (found).",
    )
    reason = forms.CharField(
        max_length=200, help_text="Recorded on each ledger line, e.g. “Damaged in the stockroom”."
    )


class StockReceiveForm(forms.Form):
    quantity = forms.IntegerField(label="Units received (each row)")
    reference = forms.CharField(
        max_length=120, required=False, help_text="Delivery note or purchase order number."
    )


class StockCountForm(forms.ModelForm):
    class Meta:
        model = StockCount
        fields = ["location", "kind", "counted_at", "reference"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        counted_at = self.fields.get("counted_at")
        if counted_at is not None:  # the add form (an existing count's page is read-only)
            counted_at.required = True
            counted_at.initial = timezone.now
            counted_at.help_text = "When the shelves were counted; later movements count too."


class TransferForm(forms.ModelForm):
    class Meta:
        model = Transfer
        fields = ["from_location", "to_location", "reference", "note", "expected_at"]


class StockRuleFormSet(BaseInlineFormSet):
    """The locations feeding a channel: only sales channels promise stock."""

    def clean(self):
        super().clean()
        kept = [
            form
            for form in self.forms
            if getattr(form, "cleaned_data", None) and not form.cleaned_data.get("DELETE")
        ]
        if kept and not self.instance.is_sales:
            raise ValidationError(
                "Stock rules are for sales channels; this is a messaging channel. "
                "Remove the rules or choose a sales kind."
            )
