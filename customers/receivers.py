"""Receivers of other apps' signals."""

from customers.timeline_json import forget_renditions


def _code_changed(instance, update_fields) -> bool:
    if instance._state.adding or instance.pk is None:
        return False
    if update_fields is not None and "code" not in update_fields:
        return False  # a save of other fields (a count flag, say): no query
    old = type(instance)._base_manager.filter(pk=instance.pk).values_list("code", flat=True)
    old = old.first()
    return old is not None and old != instance.code


def on_channel_saving(sender, instance, update_fields=None, **kwargs) -> None:
    """A channel's code changes (the admin keeps it fixed; code may not): its events' stored
    timeline JSON names the old one."""
    if _code_changed(instance, update_fields):
        forget_renditions(channel_id=instance.pk)


def on_location_saving(sender, instance, update_fields=None, **kwargs) -> None:
    """A location's code changes: its events' stored timeline JSON names the old one."""
    if _code_changed(instance, update_fields):
        forget_renditions(location_id=instance.pk)
