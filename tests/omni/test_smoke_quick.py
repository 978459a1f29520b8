def test_default_channels_seeded(db):
    from omni.models import Channel

    assert set(Channel.objects.values_list("code", flat=True)) == {
        "store",
        "web",
        "app",
        "social-shop",
        "marketplace",
        "email",
        "sms",
        "push",
        "social-dm",
        "ads-audience",
    }
