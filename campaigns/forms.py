"""Forms of the campaigns admin: templates refused when a field has problems (syntax errors,
unknown variables), campaign steps checked against the messaging channels and the template's
renditions, and the retargeting audience export."""

from django import forms
from django.forms.models import BaseInlineFormSet

from campaigns.models import CampaignStep, Template
from campaigns.services.campaigns import (
    rendition_problem,
    sendable_channels,
    step_channel_problems,
)
from customers.models import Segment


class TemplateForm(forms.ModelForm):
    """Refuses a template whose fields have problems, each shown on its field."""

    class Meta:
        model = Template
        fields = [
            "name",
            "description",
            "email_subject",
            "email_html",
            "email_text",
            "sms_text",
            "push_title",
            "push_body",
            "social_text",
        ]

    def clean(self):
        data = super().clean()
        from campaigns.rendering import template_problems

        draft = Template(
            **{
                field.name: data.get(field.name) or ""
                for field in Template._meta.concrete_fields
                if field.name in self.fields
            }
        )
        for field, messages in template_problems(draft).items():
            self.add_error(field if field in self.fields else None, messages)
        return data


class CampaignStepForm(forms.ModelForm):
    class Meta:
        model = CampaignStep
        fields = ["position", "delay_minutes", "channels", "template"]
        widgets = {"channels": forms.TextInput(attrs={"size": 24})}

    def clean_channels(self):
        codes = [c.strip() for c in self.cleaned_data["channels"].split(",") if c.strip()]
        problems = step_channel_problems(codes, self._channels())
        if problems:
            raise forms.ValidationError(problems)
        return ", ".join(codes)

    def clean(self):
        data = super().clean()
        template, channels = data.get("template"), data.get("channels")
        if template is not None and channels and "channels" not in self.errors:
            first = self._channels()[channels.split(",")[0].strip()]
            # The rendition only: a template's own problems are refused on its page (and
            # activation checks them again).
            missing = rendition_problem(template, first)
            if missing:
                self.add_error("template", missing)
        return data

    def _channels(self):
        # One read of the channels per form set (shared by its forms).
        cache = getattr(self, "channel_cache", None)
        if cache is None:
            cache = sendable_channels()
            self.channel_cache = cache
        return cache


class CampaignStepFormSet(BaseInlineFormSet):
    """Steps read the messaging channels once for the whole form set."""

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        if not hasattr(self, "_channel_cache"):
            self._channel_cache = sendable_channels()
        form.channel_cache = self._channel_cache
        return form


class AudienceExportForm(forms.Form):
    """The retargeting audience for ad platforms: a segment or the abandoned-cart audience."""

    SEGMENT = "segment"
    ABANDONED_CARTS = "abandoned_carts"

    audience = forms.ChoiceField(
        choices=[
            (SEGMENT, "The members of a segment"),
            (ABANDONED_CARTS, "Customers with an abandoned cart"),
        ],
        widget=forms.RadioSelect,
        initial=SEGMENT,
    )
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.order_by("name"), required=False, empty_label="(choose)"
    )
    min_idle_minutes = forms.IntegerField(
        label="Cart idle for at least (minutes)",
        min_value=0,
        max_value=60 * 24 * 365,
        initial=60,
        required=False,
        help_text="Abandoned carts only: open carts with lines untouched this long.",
    )

    def clean(self):
        data = super().clean()
        if data.get("audience") == self.SEGMENT and data.get("segment") is None:
            self.add_error("segment", "Choose the segment to export.")
        if data.get("audience") == self.ABANDONED_CARTS and data.get("min_idle_minutes") is None:
            data["min_idle_minutes"] = 60
        return data
