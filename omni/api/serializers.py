from rest_framework import serializers

from omni.models import Channel


class ChannelOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Channel
        fields = ["code", "name", "kind", "currency", "is_active", "updated_at"]
