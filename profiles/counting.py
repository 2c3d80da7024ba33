"""Counting rows without scanning them all (PostgreSQL's planner statistics)."""

from __future__ import annotations

from typing import Any

import orjson
from django.db import connection
from django.db.models import QuerySet


def queryset_count_estimate(queryset: QuerySet[Any], *, exact_up_to: int) -> tuple[int, bool]:
    """(count, exact). Exact up to `exact_up_to` rows (a count over a LIMITed subquery, which
    stops early). Above that, on PostgreSQL, the planner's estimate: `pg_class.reltuples` for
    a whole table, EXPLAIN's row estimate (reltuples times the filters' selectivity, e.g. a
    profile's share of the events from the column's most-common values) for a filtered one.
    Elsewhere always exact."""
    if connection.vendor != "postgresql":
        return queryset.count(), True
    if not queryset.query.where:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                           [queryset.model._meta.db_table])  # fmt: skip
            row = cursor.fetchone()
        if row and row[0] > exact_up_to:
            return int(row[0]), False
    capped = queryset.order_by()[: exact_up_to + 1].count()
    if capped <= exact_up_to:
        return capped, True
    plan = orjson.loads(queryset.order_by().explain(format="json"))
    return max(capped, int(plan[0]["Plan"]["Plan Rows"])), False
