"""Running a SQL trait: the query on the read-only warehouse connection, its rows checked,
and an identify call for each person whose values changed (or who left the result) sent
through ingest's `messages_ingest`, from the definition's own source. The pipeline then
resolves them as it does any identify: an unknown identifier makes a new profile, the change
feed and computed traits see the traits.

A run is claimed before it starts (queued → running, a conditional update), so a task
delivered twice runs it once; at most one run per definition is queued or running (a unique
index), so two never overlap. What was sent is remembered per person (`SqlTraitValue`) in the
transaction that sends it, chunk by chunk: a run that fails half-way has sent, and remembered,
its first chunks, and the next run sends the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ingest.services import messages_ingest
from sqltraits.definitions import DefinitionError, query_check
from sqltraits.models import SqlTrait, SqlTraitRun, SqlTraitValue
from sqltraits.results import Report, ResultError, Send, changes_plan, columns_check, identify_message, rows_read
from sqltraits.warehouse import WarehouseError, warehouse_rows

logger = logging.getLogger(__name__)

# The task's limits (sqltraits/tasks.py): a query of up to SQL_TRAITS_STATEMENT_TIMEOUT
# (60 s by default) and then at most SQL_TRAITS_MAX_ROWS (1M) rows sent, at 500 a
# transaction of ~50-100 ms: about half an hour at worst.
RUN_SOFT_TIME_LIMIT = 30 * 60
RUN_TIME_LIMIT = 32 * 60
# A run still `running` this long after it started died with its worker.
RUN_STALE_AFTER = timedelta(seconds=RUN_TIME_LIMIT + 5 * 60)
# Identify calls per messages_ingest call (one stored batch, one transaction): the pipeline
# resolves up to ~1,000 messages per transaction, and a batch this size is ~100 ms of it.
SEND_CHUNK = 500
# Someone missing from the result gets null a millisecond before the run's time: if a changed
# identifier column names them anew in the same run, the new values win.
NULL_EARLIER = timedelta(milliseconds=1)
ENDPOINT = "sql-trait"


class RunFailed(Exception):
    """The run cannot go on; the message is its error."""


def sql_trait_run(*, run_id: int) -> SqlTraitRun | None:
    """Run a queued run. Returns it finished (succeeded or failed, with its report), or None
    when it is not queued (gone, or another task took it: a redelivered task does nothing).
    A failure of the query, its columns or ingest is recorded in the run and returned; any
    other error (the CDP's database, a bug, the time limit) is recorded too, then raised."""
    started = timezone.now()
    claimed = SqlTraitRun.objects.filter(pk=run_id, status=SqlTraitRun.Status.QUEUED).update(
        status=SqlTraitRun.Status.RUNNING, started_at=started
    )
    if not claimed:
        return None
    run = SqlTraitRun.objects.select_related("trait", "trait__source").get(pk=run_id)
    clock = time.monotonic()
    report = Report()
    try:
        _execute(run, report, started)
    except (WarehouseError, ResultError, DefinitionError, RunFailed) as exc:
        _finish(run, report, clock, error=str(exc))
    except BaseException as exc:  # recorded, never swallowed: the task fails with it
        _finish(run, report, clock, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    else:
        _finish(run, report, clock)
    return run


def _execute(run: SqlTraitRun, report: Report, started: datetime) -> None:
    trait = run.trait
    query = query_check(trait.query)  # again: a definition may predate a stricter check
    with warehouse_rows(query=query) as result:
        columns = columns_check(result.columns, trait.identifier)
        rows = rows_read(result.rows, columns, trait.identifier, report=report)
    run.rows = rows.count
    previous = dict(SqlTraitValue.objects.filter(trait=trait).values_list("identifier", "values").iterator(5000))
    sends, forget = changes_plan(rows, previous)
    for start in range(0, len(sends), SEND_CHUNK):
        _send(run, trait, sends[start : start + SEND_CHUNK], report, started)
    for start in range(0, len(forget), SEND_CHUNK):
        SqlTraitValue.objects.filter(trait=trait, identifier__in=forget[start : start + SEND_CHUNK]).delete()


def _send(run: SqlTraitRun, trait: SqlTrait, chunk: Sequence[Send], report: Report, started: datetime) -> None:
    """One chunk of identify calls through ingest, and what they set remembered, in one
    transaction (the pipeline gets the batch after the commit)."""
    messages = [
        identify_message(send=s, identifier=trait.identifier, key=trait.key, run_id=run.pk,
                         timestamp=started if s.state is not None else started - NULL_EARLIER)
        for s in chunk
    ]  # fmt: skip
    now = timezone.now()
    with transaction.atomic():
        outcome = messages_ingest(items=messages, write_key=trait.source.write_key, endpoint=ENDPOINT,
                                  received_at=now, email_identifies=trait.identifier == "email")  # fmt: skip
        if outcome.status != 200:
            raise RunFailed(f"Ingest refused the identify calls ({outcome.status}: {outcome.body.get('message')}); "
                            f"is the source {trait.source.name!r} disabled?")  # fmt: skip
        refused = {r.index: r for r in outcome.rejections}
        for index, rejection in refused.items():
            if index is not None:
                report.skip("refused_by_ingest", f"{trait.identifier} {chunk[index].identifier!r}: "
                                                 f"{rejection.code}: {rejection.message}")  # fmt: skip
        sent = [s for i, s in enumerate(chunk) if i not in refused]
        _remember(trait, sent, now)
    for s in sent:
        if s.state is None:
            run.people_nulled += 1
        else:
            run.people_sent += 1
        run.values_changed += s.changed


def _remember(trait: SqlTrait, sent: Sequence[Send], now: datetime) -> None:
    kept = [SqlTraitValue(trait=trait, identifier=s.identifier, values=s.state, updated_at=now)
            for s in sent if s.state is not None]  # fmt: skip
    if kept:
        SqlTraitValue.objects.bulk_create(
            kept, update_conflicts=True, unique_fields=["trait", "identifier"], update_fields=["values", "updated_at"]
        )
    if gone := [s.identifier for s in sent if s.state is None]:
        SqlTraitValue.objects.filter(trait=trait, identifier__in=gone).delete()


def _finish(run: SqlTraitRun, report: Report, clock: float, *, error: str = "") -> None:
    """Record the run's end, on the run and on its definition (what lists show)."""
    now = timezone.now()
    status = SqlTraitRun.Status.FAILED if error else SqlTraitRun.Status.SUCCEEDED
    fields: dict[str, Any] = {
        "status": status, "finished_at": now, "duration_ms": int((time.monotonic() - clock) * 1000),
        "rows": run.rows, "people_sent": run.people_sent, "values_changed": run.values_changed,
        "people_nulled": run.people_nulled, "skipped": report.total, "skipped_reasons": report.as_json(),
        "error": error,
    }  # fmt: skip
    for name, value in fields.items():
        setattr(run, name, value)
    if error:
        logger.warning("SQL trait %s, run %s failed: %s", run.trait.key, run.pk, error)
    with transaction.atomic():
        SqlTraitRun.objects.filter(pk=run.pk).update(**fields)
        SqlTrait.objects.filter(pk=run.trait_id).update(last_run_at=now, last_status=status, last_error=error)
