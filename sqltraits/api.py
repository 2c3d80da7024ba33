"""`/api/v1/sql-traits`: define SQL traits, start a run (202), read the runs and their reports.
Writing needs a token made with `--write`; errors name the bad field, as `/api/v1/computed-traits`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api import schemas
from profiles.api.base import ApiView, query
from profiles.api.schemas import StrictBooleanField, StrictCharField, StrictIntegerField
from sqltraits.definitions import IDENTIFIERS, KEY_RE, MAX_EVERY_HOURS, MAX_KEY, MAX_QUERY, DefinitionError
from sqltraits.models import SqlTrait, SqlTraitRun
from sqltraits.selectors import sql_trait_runs
from sqltraits.services import sql_trait_create, sql_trait_delete, sql_trait_run_request, sql_trait_update

TAG = "SQL traits"
KEY = OpenApiParameter(
    "key", str, OpenApiParameter.PATH, description="The SQL trait's key, e.g. `has_open_ticket`.",
    examples=[OpenApiExample("has_open_ticket", value="has_open_ticket")],
)  # fmt: skip


class SqlTraitIn(serializers.Serializer):
    key = serializers.RegexField(KEY_RE.pattern, max_length=MAX_KEY, help_text="snake_case, fixed once created.")
    name = StrictCharField(required=False, max_length=200)
    query = StrictCharField(
        max_length=MAX_QUERY,
        help_text="One SELECT (or WITH … SELECT): the identifier column and 1 to 25 trait columns (strings, numbers, "
        "booleans). It runs read-only, with a timeout.",
    )
    identifier = serializers.ChoiceField(choices=list(IDENTIFIERS), required=False, help_text="Default user_id.")
    every_hours = StrictIntegerField(required=False, min_value=1, max_value=MAX_EVERY_HOURS, help_text="Default 12.")
    enabled = StrictBooleanField(required=False, help_text="Disabled: not run on the schedule.")


class RunSummary(serializers.Serializer):
    at = serializers.DateTimeField(allow_null=True)
    status = StrictCharField(allow_blank=True, help_text="succeeded or failed; empty before the first run.")
    error = StrictCharField(allow_blank=True)


class SqlTraitOut(SqlTraitIn):
    source_id = StrictIntegerField(help_text="The source its identify calls come from.")
    last_run = RunSummary()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SqlTraitList(serializers.Serializer):
    results = SqlTraitOut(many=True)


class Accepted(serializers.Serializer):
    key = StrictCharField()
    run = StrictIntegerField(help_text="The run's id: see /runs.")
    status = serializers.ChoiceField(choices=["queued", "running"], help_text="`running`: one was already under way.")


class Skipped(serializers.Serializer):
    count = StrictIntegerField()
    message = StrictCharField()
    examples = serializers.ListField(child=StrictCharField())


class RunOut(serializers.Serializer):
    id = StrictIntegerField()
    status = serializers.ChoiceField(choices=[c for c, _ in SqlTraitRun.Status.choices])
    trigger = StrictCharField()
    requested_by = StrictCharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = StrictIntegerField(allow_null=True)
    rows = StrictIntegerField(help_text="Rows the query returned.")
    people_sent = StrictIntegerField(help_text="Identify calls for people whose values changed.")
    values_changed = StrictIntegerField()
    people_nulled = StrictIntegerField(help_text="People missing from the result: their traits set to null.")
    skipped = StrictIntegerField(help_text="Rows skipped.")
    skipped_reasons = serializers.DictField(child=Skipped(), help_text="Per reason: count, message, a few examples.")
    error = StrictCharField(allow_blank=True)


class RunList(serializers.Serializer):
    results = RunOut(many=True)


class RunsQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)


OPEN_TICKETS = {
    "key": "has_open_ticket", "name": "Has an open support ticket", "identifier": "email", "every_hours": 1,
    "query": "SELECT lower(email) AS email, bool_or(status = 'open') AS has_open_ticket, "
             "count(*) FILTER (WHERE status = 'open') AS open_tickets FROM tickets GROUP BY lower(email)",
}  # fmt: skip
RUN_EXAMPLE = {
    "id": 42, "status": "succeeded", "trigger": "schedule", "requested_by": "", "created_at": "2026-12-01T06:00:00Z",
    "started_at": "2026-12-01T06:00:01Z", "finished_at": "2026-12-01T06:00:03Z", "duration_ms": 1840, "rows": 1204,
    "people_sent": 37, "values_changed": 41, "people_nulled": 2, "skipped": 1, "error": "",
    "skipped_reasons": {"null_identifier": {"count": 1, "message": "The identifier is null or empty.",
                                            "examples": ["row 77: null"]}},
}  # fmt: skip
WRITE_ERRORS = {
    400: OpenApiResponse(schemas.Error, description="A bad definition: the message names the field, e.g. "
                         "`query: A SQL trait only reads: DELETE is refused.`"),
    403: OpenApiResponse(schemas.Error, description="A read-only token (make one with `create_access_token --write`)."),
}  # fmt: skip


def shape(trait: SqlTrait) -> dict[str, Any]:
    return {
        "key": trait.key, "name": trait.name, "query": trait.query, "identifier": trait.identifier,
        "every_hours": trait.every_hours, "enabled": trait.enabled, "source_id": trait.source_id,
        "last_run": {"at": trait.last_run_at, "status": trait.last_status, "error": trait.last_error},
        "created_at": trait.created_at, "updated_at": trait.updated_at,
    }  # fmt: skip


def run_shape(run: SqlTraitRun) -> dict[str, Any]:
    return {f: getattr(run, f) for f in RunOut().fields}


def _body(request: Request, *, partial: bool = False) -> dict[str, Any]:
    """The body, each field's type checked (an error names its field); the definition itself
    is checked by the service."""
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError("The body is a JSON object.")
    if unknown := sorted(set(request.data) - set(SqlTraitIn().fields)):
        raise exceptions.ValidationError({name[:40]: "Unknown field." for name in unknown[:5]})
    SqlTraitIn(data=request.data, partial=partial).is_valid(raise_exception=True)
    return dict(request.data)


def _invalid(exc: DefinitionError) -> exceptions.ValidationError:
    return exceptions.ValidationError(f"{exc.path}: {exc.message}")


def _trait(key: str) -> SqlTrait:
    trait = SqlTrait.objects.filter(key=key).first()
    if trait is None:
        raise exceptions.NotFound(f"There is no SQL trait {key!r}.")
    return trait


class SqlTraitsView(ApiView):
    @extend_schema(tags=[TAG], summary="SQL traits", responses={200: SqlTraitList, **schemas.errors(401, 429)})
    def get(self, request: Request) -> Response:
        return Response({"results": [shape(t) for t in SqlTrait.objects.order_by("key")]})

    @extend_schema(
        tags=[TAG], summary="Define a SQL trait", request=SqlTraitIn,
        description="It runs on the schedule's next check (within 5 minutes), then every `every_hours`; "
                    "`POST /{key}/run` runs it now.",
        examples=[OpenApiExample("has an open support ticket", value=OPEN_TICKETS, request_only=True)],
        responses={201: SqlTraitOut, **schemas.errors(401, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        try:
            trait = sql_trait_create(data=_body(request), actor=request.auth, reason="created through the API")
        except DefinitionError as exc:
            raise _invalid(exc) from None
        return Response(shape(trait), status=201)


class SqlTraitView(ApiView):
    @extend_schema(tags=[TAG], summary="A SQL trait", parameters=[KEY],
                   responses={200: SqlTraitOut, **schemas.errors(401, 404, 429)})  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        return Response(shape(_trait(key)))

    @extend_schema(
        tags=[TAG], summary="Change a SQL trait", parameters=[KEY], request=SqlTraitIn(partial=True),
        description="Only the fields given change; the key is fixed. The next run compares with what the last sent.",
        examples=[OpenApiExample("run hourly", value={"every_hours": 1}, request_only=True)],
        responses={200: SqlTraitOut, **schemas.errors(401, 404, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def patch(self, request: Request, key: str) -> Response:
        _trait(key)
        try:
            trait = sql_trait_update(key=key, data=_body(request, partial=True), actor=request.auth,
                                     reason="changed through the API")  # fmt: skip
        except DefinitionError as exc:
            raise _invalid(exc) from None
        return Response(shape(trait))

    @extend_schema(tags=[TAG], summary="Delete a SQL trait and its runs", parameters=[KEY],
                   description="Profiles keep the traits it set; its source is disabled.",
                   responses={204: None, **schemas.errors(401, 404, 429), **WRITE_ERRORS})  # fmt: skip
    def delete(self, request: Request, key: str) -> Response:
        _trait(key)
        sql_trait_delete(key=key, actor=request.auth, reason="deleted through the API")
        return Response(status=204)


class RunView(ApiView):
    @extend_schema(
        tags=[TAG], summary="Run a SQL trait now", parameters=[KEY], request=None,
        description="Queues a run and answers at once with its id; if one is queued or running already, that one.",
        examples=[OpenApiExample("queued", value={"key": "has_open_ticket", "run": 42, "status": "queued"},
                                 response_only=True, status_codes=["202"])],
        responses={202: Accepted, **schemas.errors(401, 404, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def post(self, request: Request, key: str) -> Response:
        run, _ = sql_trait_run_request(trait_id=_trait(key).pk, trigger="api", actor=request.auth,
                                       reason="run through the API")  # fmt: skip
        return Response({"key": key, "run": run.pk, "status": run.status}, status=202)


class RunsView(ApiView):
    @extend_schema(
        tags=[TAG], summary="A SQL trait's runs, newest first", parameters=[KEY, RunsQuery],
        examples=[OpenApiExample("a run", value={"results": [RUN_EXAMPLE]}, response_only=True,
                                 status_codes=["200"])],
        responses={200: RunList, **schemas.errors(400, 401, 404, 429)},
    )  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        params = query(RunsQuery, request)
        runs = sql_trait_runs(trait_id=_trait(key).pk, limit=params["limit"])
        return Response({"results": [run_shape(r) for r in runs]})
