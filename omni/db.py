"""Database helpers shared by the apps."""

import hashlib
import itertools
import re
import struct
import weakref

from django.db import connections

_names = itertools.count(1)
_PLACEHOLDER = re.compile(r"%%|%s")


def _numbered(sql: str) -> str:
    """Django's ``%s`` parameter markers as PostgreSQL's ``$1, $2, ...`` (``%%`` as ``%``)."""
    counter = itertools.count(1)
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(counter)}", sql)


class PreparedQuery:
    """A ``values_list`` queryset compiled once and run many times with new parameters.

    Django builds and compiles a queryset's SQL on every evaluation, and PostgreSQL plans it on
    every execution; for a hot read of a few rows (the SKU lookup, token authentication) each
    costs more than running the query. This keeps the ORM's SQL and its result converters and
    only swaps the parameter values. On PostgreSQL the statement is also prepared on the server
    once per connection (``PREPARE``/``EXECUTE``), so it is not planned again. That needs
    session-level connections: behind PgBouncer use session pooling, not transaction pooling.

    ``build`` takes one marker per parameter and returns the queryset; each marker must end up
    as a query parameter (a filter value), not inlined into the SQL.

    A prepared statement soon runs with a generic plan, made for an average value: where the
    best plan depends on the value (a skewed column), bound the query so that the generic plan
    is the right one (see ``customers.api.timeline._of_one``).
    """

    def __init__(self, build):
        self._build = build
        self._name = f"omni_prepared_{next(_names)}"
        self._compiled = weakref.WeakKeyDictionary()  # connection wrapper -> compiled entry
        self._prepared = weakref.WeakKeyDictionary()  # DB-API connection -> True

    def _compile(self, connection, count: int):
        markers = [f"\x00prepared-parameter-{i}\x00" for i in range(count)]
        compiler = self._build(*markers).query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        params = list(params)
        positions = [params.index(marker) for marker in markers]
        fields = [select[0] for select in compiler.select[: compiler.col_count]]
        converters = compiler.get_converters(fields)
        if connection.vendor == "postgresql":
            prepare = f"PREPARE {self._name} AS {_numbered(sql)}"
            sql = (
                f"EXECUTE {self._name} ({', '.join(['%s'] * len(params))})"
                if params
                else (f"EXECUTE {self._name}")
            )
        else:
            prepare = None
        return compiler, sql, params, positions, converters, prepare

    def rows(self, *args, using: str = "default") -> list:
        connection = connections[using]
        entry = self._compiled.get(connection)
        if entry is None:
            entry = self._compiled[connection] = self._compile(connection, len(args))
        compiler, sql, params, positions, converters, prepare = entry
        params = list(params)
        for position, value in zip(positions, args, strict=True):
            params[position] = value
        with connection.cursor() as cursor:
            if prepare is not None and connection.connection not in self._prepared:
                cursor.execute(prepare)  # prepared statements outlive transactions
                self._prepared[connection.connection] = True
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if converters:
            rows = [tuple(row) for row in compiler.apply_converters(rows, converters)]
        return rows


def bulk_update_values(model, objs, fields: list[str], *, batch_size: int = 2000) -> int:
    """``QuerySet.bulk_update`` that scales: on PostgreSQL one ``UPDATE ... FROM (VALUES ...)``
    per batch instead of a ``CASE WHEN`` per field and row, which Django builds and PostgreSQL
    parses at a cost that grows with the square of the batch. Elsewhere Django's own
    ``bulk_update``. Values are prepared by each field, as ``save()`` would. Returns the number
    of rows given."""
    objs = list(objs)
    if not objs:
        return 0
    connection = connections["default"]
    if connection.vendor != "postgresql":
        model._base_manager.bulk_update(objs, fields, batch_size=batch_size)
        return len(objs)
    meta = model._meta
    pk = meta.pk
    targets = [meta.get_field(name) for name in fields]
    columns = [pk.column] + [field.column for field in targets]
    casts = [f"%s::{field.cast_db_type(connection)}" for field in [pk, *targets]]
    row = f"({', '.join(casts)})"
    assignments = ", ".join(f'"{field.column}" = v."{field.column}"' for field in targets)
    names = ", ".join(f'"{column}"' for column in columns)
    with connection.cursor() as cursor:
        for start in range(0, len(objs), batch_size):
            chunk = objs[start : start + batch_size]
            params = []
            for obj in chunk:
                params.append(pk.get_db_prep_value(obj.pk, connection))
                for field in targets:
                    params.append(field.get_db_prep_save(getattr(obj, field.attname), connection))
            cursor.execute(
                f'UPDATE "{meta.db_table}" AS t SET {assignments} '
                f"FROM (VALUES {', '.join([row] * len(chunk))}) AS v({names}) "
                f'WHERE t."{pk.column}" = v."{pk.column}"',
                params,
            )
    return len(objs)


def advisory_xact_lock(names, *, using: str = "default") -> None:
    """Serialise, until the transaction ends, everyone who locks one of these names
    (strings, e.g. ``"customer-identity:email:ana@example.com"``): PostgreSQL advisory locks,
    all taken in one statement and in one order, so two callers never deadlock on them.
    SQLite serialises writers anyway: nothing to do there."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    keys = sorted(
        {
            struct.unpack(">q", hashlib.blake2b(name.encode(), digest_size=8).digest())[0]
            for name in names
        }
    )
    if not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM "
            "(SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS keys",
            [keys],
        )
