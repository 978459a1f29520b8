"""Helpers shared by the admins of every app."""

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpResponseRedirect
from django.utils.functional import cached_property

from omni.exceptions import OmniError


class ServiceAdminMixin:
    """Admin whose saves call services: a refused write shows its message and changes nothing.

    Django's change view runs in a transaction, so an ``OmniError`` raised by a service while
    saving the object or its inlines rolls back everything the save had done.
    """

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except OmniError as exc:
            self.message_user(request, f"Nothing was saved. {error_text(exc)}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def error_text(exc: OmniError) -> str:
    """A domain error's message with its field details, for an admin message."""
    details = "; ".join(_details(exc.extra))
    return exc.message + (f" ({details})" if details else "")


def _details(extra: dict, prefix: str = ""):
    """``field: message`` pairs of an error's details, nested ones (per line) flattened; data
    that is not a message (figures the API returns) is left out."""
    for field, errors in extra.items():
        if field == "errors":
            continue
        name = f"{prefix}{field}"
        if isinstance(errors, dict):
            yield from _details(errors, f"{name} ")
        elif isinstance(errors, list) and all(isinstance(e, str) for e in errors):
            yield f"{name}: {' '.join(errors)}"
        elif isinstance(errors, str | int):
            yield f"{name}: {errors}"


def choices_evaluated_once(formfield):
    """Evaluate a foreign-key form field's choices now, once, instead of once per form.

    Every form of an inline formset deep-copies its fields, and a ``ModelChoiceField`` copy
    queries its choices again when rendered: one query per inline row and field. Fixing the
    choices as a list on the formset's base field is shared by all its forms; submitted values
    are still validated against the queryset.
    """
    if formfield is not None and getattr(formfield, "queryset", None) is not None:
        formfield.choices = list(formfield.choices)
    return formfield


class ReadOnlyAdmin(admin.ModelAdmin):
    """A log that nobody edits or deletes in the admin (the outbox, the stock ledger)."""

    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting an undelivered outbox event would silently drop it.
        return False


class BoundedCountPaginator(Paginator):
    """Pages over a table of millions of rows without counting them.

    Django's paginator counts every matching row (``COUNT(*)``) on each changelist page. Here
    ``count`` never reads more than ``max_rows + 1`` rows: unfiltered on PostgreSQL it is the
    planner's estimate (``pg_class.reltuples``, one catalog read); otherwise one ``COUNT`` over
    the first ``max_rows + 1`` matching rows, in the list's own order so the index that serves
    the page serves the count. Beyond ``max_rows`` the list pages through the first
    ``max_rows`` rows (deeper offsets are slow anyway; filter or search to narrow down) and
    ``count_label`` says "about 5,000,000" or "more than 10,000".
    """

    max_rows = 10_000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.capped = False
        self.estimated_total = None

    @cached_property
    def count(self):
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        estimate = self._estimate(queryset)
        if estimate is not None and estimate > self.max_rows:
            self.capped, self.estimated_total = True, estimate
            return self.max_rows
        found = queryset.values("pk")[: self.max_rows + 1].count()
        if found > self.max_rows:
            self.capped = True
            return self.max_rows
        return found

    @property
    def count_label(self) -> str:
        count = self.count
        if self.estimated_total is not None:
            return f"about {self.estimated_total:,}"
        if self.capped:
            return f"more than {self.max_rows:,}"
        return f"{count:,}"

    @staticmethod
    def _estimate(queryset) -> int | None:
        """The planner's row estimate of an unfiltered table (PostgreSQL), else None."""
        connection = connections[queryset.db]
        query = queryset.query
        if connection.vendor != "postgresql" or query.where or query.distinct or query.combinator:
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        # -1: never analysed; a small table is counted exactly instead.
        return row[0] if row and row[0] > 0 else None


# --- Extensions of the channel admin by later apps --------------------------------------------
# omni does not import the apps that build on it; they register here what the channel page
# shows (inventory: the channel's stock policy and stock rules) and what runs after a save.

CHANNEL_INLINES: list[type] = []
CHANNEL_SAVED_HOOKS: list = []


def register_channel_inline(inline: type) -> type:
    """Show ``inline`` on the channel admin page. It may define ``shown_for(channel)`` (the
    channel is None on the add page) to appear only for some channels. Usable as a decorator."""
    if inline not in CHANNEL_INLINES:
        CHANNEL_INLINES.append(inline)
    return inline


def register_channel_saved(hook):
    """Run ``hook(request=, channel=, form=, formsets=)`` after the channel admin saved a
    channel and its inlines (in the same transaction); a returned text is shown as a message."""
    if hook not in CHANNEL_SAVED_HOOKS:
        CHANNEL_SAVED_HOOKS.append(hook)
    return hook
