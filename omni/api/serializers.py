from rest_framework import serializers

from omni.models import Channel


class ChannelOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Channel
        fields = ["code", "name", "kind", "currency", "is_active", "updated_at"]


# Strings whose values are listed in the schema: the services check the values and answer with
# the domain's error codes, so the fields only document them (shared by every app's API).


def one_of(values) -> str:
    return "One of: " + ", ".join(f"`{v}`" for v in values) + "."


def string_output(values, help_text: str = "", **kwargs) -> serializers.CharField:
    return serializers.CharField(help_text=f"{help_text} {one_of(values)}".strip(), **kwargs)


def string_input(values, help_text: str = "", **kwargs) -> serializers.CharField:
    """A string whose values the service checks; documented with the list of them."""
    return serializers.CharField(help_text=f"{help_text} {one_of(values)}".strip(), **kwargs)
