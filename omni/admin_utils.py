"""Helpers shared by the admins of every app."""

import csv

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.utils.functional import cached_property

from omni.exceptions import OmniError

# A bounded inline shows at most this many rows of its parent (a POS snapshot count has
# thousands of lines, a loyal customer hundreds of consent decisions).
MAX_INLINE_ROWS = 200


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 line``, ``2,000 lines``, ``3 discrepancies`` (with ``plural_form``)."""
    return f"{count:,} {singular if count == 1 else (plural_form or singular + 's')}"


class FormRefused(Exception):
    """A service refused what one form of the change page holds (the page's own form or one
    inline form). ``ServiceAdminMixin`` rolls the save back and shows the page again with the
    service's message on that form, as typed."""

    def __init__(self, form, error: OmniError):
        super().__init__(error.message)
        self.error = error
        self.prefix = form.prefix or ""
        # The message goes on the one field the service names, else on the form as a whole.
        named = [name for name in error.extra if name in form.fields]
        self.errors = {named[0] if len(named) == 1 else None: [error.message]}


class ServiceAdminMixin:
    """Admin whose saves call services: a refused write shows its message and changes nothing.

    Django's change view runs in a transaction, so an ``OmniError`` raised by a service while
    saving the object or its inlines rolls back everything the save had done; the page then
    shows the service's message. A ``FormRefused`` (a service refused one form's values) shows
    the page again, as submitted, with the message on that form.

    Saves report what they did through ``note`` rather than ``message_user``: the notes are
    shown once the whole save went through, never next to the error of a refused one.
    """

    def note(self, request, text: str, level=messages.SUCCESS) -> None:
        """A message shown if the save of this page goes through."""
        request._service_notes = [*getattr(request, "_service_notes", []), (level, text)]

    def _emit_notes(self, request) -> None:
        for level, text in getattr(request, "_service_notes", []):
            self.message_user(request, text, level)
        request._service_notes = []

    def response_add(self, request, obj, post_url_continue=None):
        self._emit_notes(request)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        self._emit_notes(request)
        return super().response_change(request, obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        request._service_notes = []
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except FormRefused as refused:
            if getattr(request, "_service_form_errors", None) is None:
                # Validate again with the service's message on the refused form: it is
                # invalid now, so the page is shown as submitted and nothing is saved.
                request._service_notes = []
                request._service_form_errors = {refused.prefix: refused.errors}
                return self.changeform_view(request, object_id, form_url, extra_context)
            exc = refused.error
        except OmniError as error:
            exc = error
        request._service_notes = []
        self.message_user(request, f"Nothing was saved. {error_text(exc)}", messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        refused = (getattr(request, "_service_form_errors", None) or {}).get("")
        if refused:
            form = type(form.__name__, (_RefusedForm, form), {"service_errors": refused})
        return form

    def get_formsets_with_inlines(self, request, obj=None):
        refused = getattr(request, "_service_form_errors", None)
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            if refused:
                formset = type(
                    formset.__name__, (_RefusedFormSet, formset), {"service_errors": refused}
                )
            yield formset, inline


class _RefusedForm:
    """The page's form with the errors a service gave it (``FormRefused``)."""

    service_errors: dict = {}

    def clean(self):
        data = super().clean()
        for field, errors in self.service_errors.items():
            self.add_error(field, errors)
        return data


class _RefusedFormSet:
    """An inline formset with the errors a service gave one of its forms, by form prefix."""

    service_errors: dict = {}

    def clean(self):
        super().clean()
        for form in self.forms:
            for field, errors in self.service_errors.get(form.prefix, {}).items():
                form.add_error(field, errors)


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


class BoundedInlineMixin:
    """An inline showing at most ``max_rows`` rows of its parent: the first in
    ``bounded_order`` (the oldest unless set; ``("-occurred_at", "-id")`` for the newest), picked
    through the parent's foreign key index. The inline's own ordering then applies to them."""

    parent_attname = ""  # the foreign key to the parent, e.g. "count_id"
    max_rows = MAX_INLINE_ROWS
    bounded_order: tuple[str, ...] = ("pk",)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = request.resolver_match
        parent_id = match.kwargs.get("object_id") if match else None
        if not parent_id or not str(parent_id).isdigit():
            return queryset
        shown = (
            queryset.model._default_manager.filter(**{self.parent_attname: int(parent_id)})
            .order_by(*self.bounded_order)
            .values("pk")[: self.max_rows]
        )
        return queryset.filter(pk__in=shown)


# --- CSV downloads ----------------------------------------------------------------------------

# A cell starting with one of these is run as a formula by spreadsheets (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """Text a spreadsheet would run as a formula, kept as text (a leading apostrophe); any
    other value as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text_guarded(rows):
    """``rows`` with every text cell through ``csv_cell``: for files whose text columns are all
    free text (a column of E.164 phone numbers, which start with ``+``, is guarded cell by cell
    by its producer instead)."""
    for row in rows:
        yield [csv_cell(value) for value in row]


class _Echo:
    """A file whose ``write`` returns the line, for streaming ``csv.writer`` output."""

    def write(self, value):
        return value


def csv_response(rows, filename: str) -> StreamingHttpResponse:
    """Rows (the header first) as a streamed CSV download."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


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


class BigTableMixin:
    """A changelist over millions of rows: pages without counting them, computes no facet
    counts and sorts only in its ``ordering`` (which an index serves) unless ``sortable_by``
    names indexed columns."""

    paginator = BoundedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    sortable_by = ()
    list_per_page = 100


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


# An action works on at most this many rows (one service call each): select across a filter
# of a million rows and the action refuses instead of running for an hour.
MAX_ACTION_ROWS = 500


class ServiceActionsMixin:
    """Admin actions that call one service per selected row."""

    def bounded_rows(self, request, queryset):
        """The selected rows, or None (with a message) when there are too many for one action."""
        rows = list(queryset[: MAX_ACTION_ROWS + 1])
        if len(rows) > MAX_ACTION_ROWS:
            self.message_user(
                request,
                f"An action works on at most {MAX_ACTION_ROWS} rows at once; narrow the list "
                "with a filter or a search. Nothing changed.",
                messages.ERROR,
            )
            return None
        return rows

    def run_each(self, request, queryset, call, *, done, label=str):
        """``call(row)`` for each selected row, each its own transaction; one message says how
        many were done, another lists the refused ones with the service's reason."""
        rows = self.bounded_rows(request, queryset)
        if rows is None:
            return
        succeeded, refused = 0, []
        for row in rows:
            try:
                call(row)
            except OmniError as exc:
                refused.append(f"{label(row)}: {error_text(exc)}")
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, done(succeeded), messages.SUCCESS)
        if refused:
            shown = "; ".join(refused[:10]) + ("; …" if len(refused) > 10 else "")
            self.message_user(request, f"{len(refused)} refused: {shown}", messages.WARNING)
