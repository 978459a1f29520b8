"""Receivers of other apps' signals: the timeline JSON stored with each event names its
channel's and location's codes (``customers.timeline_json``); when one changes, or a location
goes, its events' stored JSON is forgotten (the timeline computes theirs afresh)."""

from customers.timeline_json import forget_renditions

_CHANGED = "_omni_code_changed"


def on_code_saving(sender, instance, update_fields=None, **kwargs) -> None:
    """``pre_save`` of a channel or location: note whether its code changes."""
    changed = False
    saved_before = not instance._state.adding and instance.pk is not None
    if saved_before and (update_fields is None or "code" in update_fields):
        old = sender._base_manager.filter(pk=instance.pk).values_list("code", flat=True).first()
        changed = old is not None and old != instance.code
    setattr(instance, _CHANGED, changed)


def on_channel_saved(sender, instance, **kwargs) -> None:
    """``post_save`` of a channel (the admin keeps its code fixed; code may not)."""
    if getattr(instance, _CHANGED, False):
        forget_renditions(channel_id=instance.pk)


def on_location_saved(sender, instance, **kwargs) -> None:
    """``post_save`` of a location whose code changed."""
    if getattr(instance, _CHANGED, False):
        forget_renditions(location_id=instance.pk)


def on_location_deleting(sender, instance, **kwargs) -> None:
    """``pre_delete`` of a location (the admin never deletes one; code may): its events lose
    their location, so their stored JSON, which names it, goes first."""
    forget_renditions(location_id=instance.pk)
