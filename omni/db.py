"""Database helpers shared by the apps."""

import weakref

from django.db import connections


class PreparedQuery:
    """A ``values_list`` queryset compiled once per connection and run with new parameters.

    Django builds and compiles a queryset's SQL on every evaluation; for a hot read of a few
    rows (the SKU lookup, token authentication) that costs more than the query itself. This
    keeps the ORM's SQL and its result converters and only swaps the parameter values.

    ``build`` takes one marker per parameter and returns the queryset; each marker must end up
    as a query parameter (a filter value), not inlined into the SQL.
    """

    def __init__(self, build):
        self._build = build
        self._compiled = weakref.WeakKeyDictionary()

    def _compile(self, connection, count: int):
        markers = [f"\x00prepared-parameter-{i}\x00" for i in range(count)]
        compiler = self._build(*markers).query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        params = list(params)
        positions = [params.index(marker) for marker in markers]
        fields = [select[0] for select in compiler.select[: compiler.col_count]]
        converters = compiler.get_converters(fields)
        return compiler, sql, params, positions, converters

    def rows(self, *args, using: str = "default") -> list:
        connection = connections[using]
        entry = self._compiled.get(connection)
        if entry is None:
            entry = self._compiled[connection] = self._compile(connection, len(args))
        compiler, sql, params, positions, converters = entry
        params = list(params)
        for position, value in zip(positions, args, strict=True):
            params[position] = value
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if converters:
            rows = [tuple(row) for row in compiler.apply_converters(rows, converters)]
        return rows
