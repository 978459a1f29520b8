"""A touchpoint as the timeline API writes it, in PostgreSQL's SQL.

The timeline is the customers API's hot read, and writing each event's JSON costs PostgreSQL
more than finding the page (the codes of its channel and location, the time in the API's
format, the escaping of the texts). Events never change once recorded, so on PostgreSQL the
ingest writes that JSON once, into ``Touchpoint.rendition``: everything after the event's id,
which the insert does not know yet. A page then reads ``'{"id":' || id || rendition``.

``rendition`` is NULL for events recorded before it existed, on SQLite, and for the events of
a location or channel whose code changed (``forget_renditions``): the page computes theirs
with ``EVENT_JSON``, the same SQL in full, so both give the same bytes.
"""

# Everything after the id: ``,"kind":...,"event_id":...}``. Keys in the API's order; times as
# ``omni.formats.api_datetime`` writes them in UTC (microseconds only when there are any);
# ``properties`` as PostgreSQL writes the stored jsonb; every text quoted by ``to_json`` but the
# kind, which a check constraint limits to known words. Plain concatenation costs PostgreSQL
# less than ``json_build_object``. A ``str.format`` template over SQL expressions.
TAIL = (
    '\',"kind":"\' || {kind} || \'","channel":\' || to_json({channel})::text || '
    "',\"location\":' || coalesce(to_json({location})::text, 'null') || "
    "',\"occurred_at\":\"' || to_char({at} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
    "CASE WHEN to_char({at}, 'US') = '000000' THEN '' ELSE to_char({at}, '.US') END || "
    '\'Z","properties":\' || {properties}::text || \',"source":\' || to_json({source})::text || '
    "',\"event_id\":' || to_json({event_id})::text || '}}'"
)

# The whole event, id first.
EVENT_JSON = "'{{\"id\":' || {id} || " + TAIL


def tail_sql(**columns: str) -> str:
    """``TAIL`` over these SQL expressions (``kind``, ``channel`` and ``location`` codes,
    ``at``, ``properties``, ``source``, ``event_id``)."""
    return TAIL.format(**columns)


def code_sql(table: str, id_sql: str) -> str:
    """The ``code`` of the row of ``table`` (a quoted name) whose id is ``id_sql``: a scalar
    subquery, NULL when there is none."""
    return f"(SELECT u.code FROM {table} u WHERE u.id = {id_sql})"


def rendition_sql(channel_table: str, location_table: str, *, row: str, source: str = "") -> str:
    """``TAIL`` over the touchpoint columns of ``row`` (an SQL alias; ``source`` another
    expression for its source), the codes read from the two tables (quoted names)."""
    return tail_sql(
        kind=f"{row}.kind",
        channel=code_sql(channel_table, f"{row}.channel_id"),
        location=code_sql(location_table, f"{row}.location_id"),
        at=f"{row}.occurred_at",
        properties=f"{row}.properties",
        source=source or f"{row}.source",
        event_id=f"{row}.event_id",
    )


def forget_renditions(*, channel_id: int | None = None, location_id: int | None = None) -> int:
    """After a channel's or a location's code changed: its events' stored JSON names the old
    code, so it goes (the timeline computes theirs afresh). Returns the events touched."""
    from customers.models import Touchpoint

    events = Touchpoint.objects.exclude(rendition=None)
    if channel_id is not None:
        return events.filter(channel_id=channel_id).update(rendition=None)
    if location_id is not None:
        return events.filter(location_id=location_id).update(rendition=None)
    return 0
