"""A customer's timeline: the hot read of the customers API.

Keyset pages over the timeline index ``(customer, occurred_at desc, id desc)``: a cursor holds
the time and id of the row a page starts after (or, going back, before), so every page costs
one index range scan however deep it is, and events that arrive meanwhile never shift a page.
The default page (no filter, default size) runs SQL compiled once per process and prepared once
per connection, and reads each event's JSON as the ingest stored it (``customers.timeline_json``;
PostgreSQL computes it for events without); filters and other sizes go through the ORM with the
same cursor.
"""

import base64
import binascii
import json
from datetime import datetime
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection
from django.db.models import (
    BigIntegerField,
    DateTimeField,
    F,
    Func,
    OuterRef,
    Q,
    Subquery,
    TextField,
)
from django.db.models.expressions import RawSQL
from django.http import HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from customers.api.filters import TimelineFilter
from customers.api.serializers import TimelinePageOutputSerializer
from customers.models import Customer, Touchpoint
from customers.selectors import customer_not_found
from customers.timeline_json import EVENT_JSON
from inventory.models import Location
from omni.api.authentication import CachedTokenMixin
from omni.api.errors import LIST_ERRORS, ErrorSerializer
from omni.api.hot import hot_client, hot_response
from omni.api.responses import rendered_now
from omni.db import PreparedQuery
from omni.exceptions import NotFound, ValidationFailed
from omni.formats import api_datetime
from omni.models import Channel

PAGE_SIZE = 50
FIELDS = (
    "id",
    "kind",
    "channel__code",
    "location__code",
    "occurred_at",
    "properties",
    "source",
    "event_id",
)
FILTERS = frozenset(("channel", "kind", "since", "until"))
INVALID_CURSOR = "Invalid cursor."


def _at(marker):
    # Parameters the ORM passes through untouched (a field's lookup would parse the marker).
    return RawSQL("%s", (marker,), output_field=DateTimeField())


def _int(marker):
    return RawSQL("%s", (marker,), output_field=BigIntegerField())


def _newest(events, lead=()):
    return events.order_by(*lead, "-occurred_at", "-id")


def _after(events, moment, moment_again, pk, lead=()):
    """Rows after ``(moment, pk)`` in timeline order (older ones): the ``<=`` bounds the index
    scan, the ``OR`` breaks ties on the id. ``lead``: orderings that come first (the customer,
    see ``_of_one``)."""
    return _newest(
        events.filter(occurred_at__lte=moment).filter(
            Q(occurred_at__lt=moment_again) | Q(id__lt=pk)
        ),
        lead,
    )


def _before(events, moment, moment_again, pk, lead=()):
    """Rows before ``(moment, pk)`` in timeline order (newer ones), nearest first."""
    return (
        events.filter(occurred_at__gte=moment)
        .filter(Q(occurred_at__gt=moment_again) | Q(id__gt=pk))
        .order_by(*lead, "occurred_at", "id")
    )


def _of(customer):
    return Touchpoint.objects.filter(customer_id=customer)


def _of_one(customer, customer_again):
    """One customer's events for a prepared statement: her id as a range of one value.

    A prepared statement soon runs with a generic plan, made without the parameters' values.
    For ``customer_id = $1`` that plan expects an average customer's few events and may scan
    and sort all of a busy customer's 10,000 (a bitmap scan, then a sort). For a range
    PostgreSQL expects a share of the table instead, so the generic plan reads the timeline
    index in its order and stops after one page, whoever the customer. The orderings start
    with the customer (``AFTER`` and ``BEFORE``) so that they match the index under a range.
    """
    return Touchpoint.objects.filter(customer_id__gte=customer, customer_id__lte=customer_again)


AFTER = ("customer_id",)
BEFORE = ("-customer_id",)


class _EventJson(Func):
    """One event as JSON text written by PostgreSQL in full (``customers.timeline_json``):
    for the events whose JSON was not stored at ingest."""

    output_field = TextField()
    NAMES = ("id", "kind", "channel", "location", "at", "properties", "source", "event_id")

    def __init__(self):
        super().__init__(
            F("id"),
            F("kind"),
            Subquery(Channel.objects.filter(pk=OuterRef("channel_id")).order_by().values("code")),
            Subquery(Location.objects.filter(pk=OuterRef("location_id")).order_by().values("code")),
            F("occurred_at"),
            F("properties"),
            F("source"),
            F("event_id"),
        )

    def as_sql(self, compiler, connection, **extra_context):
        parts, params = {}, []
        for name, expression in zip(self.NAMES, self.source_expressions, strict=True):
            sql, expression_params = compiler.compile(expression)
            if expression_params:
                raise ValueError("event columns take no parameters")
            parts[name] = sql
        return EVENT_JSON.format(**parts), params


class _StoredJson(Func):
    """The event's JSON from what the ingest stored: its id, then ``rendition``; NULL where
    nothing was stored (``_with_computed`` fills those)."""

    output_field = TextField()
    template = "('{\"id\":' || %(expressions)s)"
    arg_joiner = " || "

    def __init__(self):
        super().__init__(F("id"), F("rendition"))


ROW_JSON = _EventJson()
STORED_JSON = _StoredJson()
JSON_FIELDS = ("id", "occurred_at", "row_json")


def _json_rows(events):
    return events.annotate(row_json=STORED_JSON).values_list(*JSON_FIELDS)


def _with_computed(rows: list) -> list:
    """``rows`` (``JSON_FIELDS``) with the JSON of events that have none stored computed by
    PostgreSQL, in one more query, only when there are any."""
    missing = [row[0] for row in rows if row[2] is None]
    if not missing:
        return rows
    computed = dict(
        Touchpoint.objects.filter(pk__in=missing)
        .annotate(row_json=ROW_JSON)
        .values_list("id", "row_json")
    )
    # An event erased between the two queries is gone from the page.
    return [
        row if row[2] is not None else (row[0], row[1], computed[row[0]])
        for row in rows
        if row[2] is not None or row[0] in computed
    ]


# Compiled once and prepared once per connection; see ``_of_one`` for why their generic
# plans read one page of the timeline index whoever the customer.
_first_page = PreparedQuery(
    lambda c, c2: _json_rows(_newest(_of_one(_int(c), _int(c2)), AFTER))[: PAGE_SIZE + 1]
)
_next_page = PreparedQuery(
    lambda c, c2, t1, t2, i: _json_rows(
        _after(_of_one(_int(c), _int(c2)), _at(t1), _at(t2), _int(i), AFTER)
    )[: PAGE_SIZE + 1]
)
_previous_page = PreparedQuery(
    lambda c, c2, t1, t2, i: _json_rows(
        _before(_of_one(_int(c), _int(c2)), _at(t1), _at(t2), _int(i), BEFORE)
    )[: PAGE_SIZE + 1]
)


def _prepared_rows(customer: int, cursor) -> list:
    if cursor is None:
        return _with_computed(_first_page.rows(customer, customer))
    moment, pk, backwards = cursor
    query = _previous_page if backwards else _next_page
    return _with_computed(query.rows(customer, customer, moment, moment, pk))


def encode_cursor(moment: datetime, pk: int, backwards: bool) -> str:
    text = f"{'b' if backwards else 'a'}|{moment.isoformat()}|{pk}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int, bool]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        direction, moment, pk = text.split("|")
        moment = parse_datetime(moment)
        pk = int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise NotFound(INVALID_CURSOR) from None
    if direction not in ("a", "b") or moment is None or timezone.is_naive(moment) or pk < 0:
        raise NotFound(INVALID_CURSOR)
    return moment, pk, direction == "b"


def _limit(request) -> int:
    raw = request.query_params.get("limit")
    if raw in (None, ""):
        return PAGE_SIZE
    try:
        limit = int(raw)
    except ValueError:
        return PAGE_SIZE  # as DRF's pagination: a bad size is the default size
    return PAGE_SIZE if limit <= 0 else min(limit, settings.API_MAX_PAGE_SIZE)


def _json_ready(request) -> bool:
    """Whether PostgreSQL may write the events' JSON: plain JSON asked for (no indent, no
    browsable API) and times shown in UTC, as the Python path would write them."""
    renderer = request.accepted_renderer
    return (
        connection.vendor == "postgresql"
        and isinstance(renderer, JSONRenderer)
        and request.accepted_media_type in (renderer.media_type, "*/*")
        and timezone.get_current_timezone_name() == "UTC"
    )


def _rows(request, customer: int, cursor, limit: int, as_json: bool) -> list:
    """The page's rows (one more than ``limit`` when there are more): ``(id, occurred_at,
    json)`` when ``as_json``, else the ``FIELDS``."""
    params = request.query_params
    filtered = not FILTERS.isdisjoint(params)
    if as_json and not filtered and limit == PAGE_SIZE:
        return _prepared_rows(customer, cursor)
    events = _of(customer)
    if filtered:
        filterset = TimelineFilter(params, queryset=events)
        if not filterset.is_valid():
            raise ValidationFailed(
                "Invalid filter: "
                + "; ".join(f"{k}: {' '.join(v)}" for k, v in filterset.errors.items()),
                extra={k: list(v) for k, v in filterset.errors.items()},
            )
        events = filterset.qs
    if cursor is None:
        events = _newest(events)
    else:
        moment, pk, backwards = cursor
        events = (_before if backwards else _after)(events, moment, moment, pk)
    if as_json:
        return _with_computed(list(_json_rows(events)[: limit + 1]))
    return list(events.values_list(*FIELDS)[: limit + 1])


def _linker(request, query):
    """Builds the page links: the request's URL with its parameters (``query``) and another
    cursor."""
    base = request.build_absolute_uri(request.path) + "?"
    params = [(k, v) for k, v in query.items() if k != "cursor"]

    def link(cursor: str) -> str:
        return base + urlencode([*params, ("cursor", cursor)])

    return link


def _page(request, query, rows, cursor, limit: int, at: int):
    """The rows of the page in order (``rows`` holds one more when there are more) and the
    links to the next and previous pages. ``at``: where the time is in a row."""
    more = len(rows) > limit
    rows = rows[:limit]
    backwards = cursor is not None and cursor[2]
    if backwards:
        rows.reverse()
    # Going forward there is a page back whenever we came by a cursor; going back, a page
    # forward always, and one further back if the query found more.
    has_next = (more and not backwards) or (backwards and bool(rows))
    has_previous = (cursor is not None and not backwards and bool(rows)) or (backwards and more)
    link = _linker(request, query) if has_next or has_previous else None
    next_link = link(encode_cursor(rows[-1][at], rows[-1][0], False)) if has_next else None
    previous_link = link(encode_cursor(rows[0][at], rows[0][0], True)) if has_previous else None
    return rows, next_link, previous_link


def _json_body(rows, next_link, previous_link) -> str:
    return (
        f'{{"next":{json.dumps(next_link)},"previous":{json.dumps(previous_link)},'
        f'"results":[{",".join(row[2] for row in rows)}]}}'
    )


_CURSOR_ONLY = frozenset(("cursor",))


class CustomerTimelineView(CachedTokenMixin, APIView):
    """Her touchpoints on every channel, newest first.

    The hot read answers the common request (an API client's token, plain JSON, a page of the
    default size with at most a cursor) before DRF wraps the request: the same token check
    (the connection's token cache, confirmed after the query as ``CachedTokenMixin`` does), the
    same prepared queries and the same body, without the per-request work of content
    negotiation, authentication and permission classes. Anything else (no or an unknown token,
    filters, another format, an invalid cursor, an empty page) takes DRF's path, which gives
    the errors.
    """

    def dispatch(self, request, *args, **kwargs):
        response = self._hot_page(request, kwargs.get("id"))
        if response is not None:
            return response
        return super().dispatch(request, *args, **kwargs)

    def _hot_page(self, request, id):
        if connection.vendor != "postgresql" or timezone.get_current_timezone_name() != "UTC":
            return None
        hot = hot_client(request, params=_CURSOR_ONLY)
        if hot is None:
            return None
        raw_cursor = request.GET.get("cursor")
        try:
            cursor = decode_cursor(raw_cursor) if raw_cursor else None
        except NotFound:
            return None
        rows = _prepared_rows(int(id), cursor)
        if not rows:
            return None  # maybe an unknown or merged customer: DRF's path says which
        rows, next_link, previous_link = _page(request, request.GET, rows, cursor, PAGE_SIZE, 1)
        return hot_response(self, request, _json_body(rows, next_link, previous_link), hot[1])

    @extend_schema(
        operation_id="customers_timeline_retrieve",
        summary="A customer's timeline",
        description="Her touchpoints on every channel, newest first. Cursor-paginated: follow "
        "`next` until it is null (and `previous` back); events that arrive meanwhile appear on "
        "the first page only.",
        parameters=[
            OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH),
            OpenApiParameter("channel", OpenApiTypes.STR, description="Channel code."),
            OpenApiParameter(
                "kind", OpenApiTypes.STR, description="Touchpoint kind (e.g. purchase)."
            ),
            OpenApiParameter(
                "since", OpenApiTypes.DATETIME, description="Events at or after this time."
            ),
            OpenApiParameter(
                "until", OpenApiTypes.DATETIME, description="Events before this time."
            ),
            OpenApiParameter(
                "limit",
                OpenApiTypes.INT,
                description=f"Page size (default {PAGE_SIZE}, max {settings.API_MAX_PAGE_SIZE}).",
            ),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="Cursor from `next`."),
        ],
        responses={
            200: TimelinePageOutputSerializer,
            **LIST_ERRORS,
            404: OpenApiResponse(
                ErrorSerializer,
                description="`not_found` (no such customer, or an invalid cursor), or "
                "`customer_merged` when the id was merged into another customer "
                "(`details.survivor` is that customer's id).",
            ),
        },
    )
    def get(self, request, id):
        customer = int(id)
        raw_cursor = request.query_params.get("cursor")
        cursor = decode_cursor(raw_cursor) if raw_cursor else None
        limit = _limit(request)
        as_json = _json_ready(request)
        rows = _rows(request, customer, cursor, limit, as_json)
        # An empty page of an unknown or merged id is a 404, with a cursor or without (a
        # cursor names a row, not the customer).
        if len(rows) == 0 and not Customer.objects.filter(pk=customer).exists():
            raise customer_not_found(customer)
        rows, next_link, previous_link = _page(
            request, request.query_params, rows, cursor, limit, 1 if as_json else 4
        )
        if as_json:
            return HttpResponse(
                _json_body(rows, next_link, previous_link),
                content_type=request.accepted_renderer.media_type,
            )
        zone = timezone.get_current_timezone()
        body = {
            "next": next_link,
            "previous": previous_link,
            "results": [
                {
                    "id": pk,
                    "kind": kind,
                    "channel": channel,
                    "location": location,
                    "occurred_at": api_datetime(occurred_at, zone),
                    "properties": properties,
                    "source": source,
                    "event_id": event_id,
                }
                for pk, kind, channel, location, occurred_at, properties, source, event_id in rows
            ],
        }
        return rendered_now(self, request, body)
