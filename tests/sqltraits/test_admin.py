"""SQL traits in the admin, for staff holding exactly the permissions named: view-only staff
see definitions and runs and change nothing; changing a definition asks why; "Run now" needs
`sqltraits.run_sqltrait` (change is not enough) and asks why; every change is audited."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from ingest.models import Source
from profiles.models import Identity
from sqltraits.models import SqlTrait, SqlTraitRun
from sqltraits.services import sql_trait_create

pytestmark = pytest.mark.django_db
LIST = "/admin/sqltraits/sqltrait/"
QUERY = "SELECT 'u1' AS user_id, 'gold' AS tier"


@pytest.fixture
def trait():
    return sql_trait_create(data={"key": "tier", "name": "Tier", "query": QUERY})


def form(**changes):
    return {"name": "Tier", "identifier": "user_id", "query": QUERY, "every_hours": "12", "enabled": "on", **changes}


def test_view_only_staff_see_and_change_nothing(staff, trait, django_capture_on_commit_callbacks):
    viewer = staff("sqltraits.view_sqltrait")
    assert viewer.get(LIST).status_code == 200
    page = viewer.get(f"{LIST}{trait.pk}/change/").content.decode()
    assert "SELECT &#x27;u1&#x27; AS user_id" in page and "sql-run-now" not in page and "Reason" not in page
    assert "run_now" not in viewer.get(LIST).content.decode()  # the action is not offered
    with django_capture_on_commit_callbacks(execute=True):
        assert viewer.post(f"{LIST}{trait.pk}/run/", {"apply": "1", "audit_reason": "x"}).status_code == 403
        viewer.post(LIST, {"action": "run_now", "_selected_action": [trait.pk], "apply": "1", "audit_reason": "x"})
        viewer.post(f"{LIST}{trait.pk}/change/", {**form(every_hours="1"), "audit_reason": "x"})
        viewer.post(f"{LIST}{trait.pk}/delete/", {"post": "yes", "audit_reason": "x"})
    trait.refresh_from_db()
    assert trait.every_hours == 12 and not SqlTraitRun.objects.exists() and not AuditEntry.objects.exists()


def test_changing_a_definition_asks_why_and_the_change_permission_does_not_run(staff, trait):
    editor = staff("sqltraits.view_sqltrait", "sqltraits.change_sqltrait")
    page = editor.get(f"{LIST}{trait.pk}/change/").content.decode()
    assert "Reason" in page and "sql-run-now" not in page and 'class="vLargeTextField sql-editor"' in page
    assert "monospace" in page  # the query editor
    assert "This field is required" in editor.post(f"{LIST}{trait.pk}/change/", form(every_hours="1")).content.decode()
    bad = editor.post(f"{LIST}{trait.pk}/change/", {**form(query="DELETE FROM tickets"), "audit_reason": "x"})
    assert "A SQL trait only reads" in bad.content.decode()
    editor.post(f"{LIST}{trait.pk}/change/", {**form(every_hours="1"), "audit_reason": "fresher data for the sale"})
    trait.refresh_from_db()
    assert trait.every_hours == 1
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.reason, entry.changes) == (
        "change",
        "fresher data for the sale",
        {"every_hours": [12, 1]},
    )
    assert editor.post(f"{LIST}{trait.pk}/run/", {"apply": "1", "audit_reason": "x"}).status_code == 403
    assert not SqlTraitRun.objects.exists()


def test_run_now_needs_its_own_permission_and_asks_why(staff, trait, django_capture_on_commit_callbacks):
    runner = staff("sqltraits.view_sqltrait", "sqltraits.run_sqltrait")
    page = runner.get(f"{LIST}{trait.pk}/change/").content.decode()
    assert f'href="/admin/sqltraits/sqltrait/{trait.pk}/run/"' in page
    asks = runner.get(f"{LIST}{trait.pk}/run/")
    assert asks.status_code == 200 and "Reason" in asks.content.decode()
    runner.post(f"{LIST}{trait.pk}/run/", {"apply": "1", "audit_reason": ""})
    assert not SqlTraitRun.objects.exists()  # no reason, no run
    with django_capture_on_commit_callbacks(execute=True):
        done = runner.post(f"{LIST}{trait.pk}/run/", {"apply": "1", "audit_reason": "the CRM import finished"})
    assert done.status_code == 302 and done["Location"].endswith(f"/{trait.pk}/change/")
    run = SqlTraitRun.objects.get()
    assert (run.status, run.trigger, run.requested_by, run.people_sent) == ("succeeded", "admin", "staff1", 1)
    profile = Identity.objects.get(kind="user_id", value="u1").profile
    assert profile.traits == {"tier": "gold"}
    entry = AuditEntry.objects.get(action="run")
    assert (entry.actor.username, entry.reason) == ("staff1", "the CRM import finished")
    # The page lists the run with its report.
    page = runner.get(f"{LIST}{trait.pk}/change/").content.decode()
    assert f"/admin/sqltraits/sqltraitrun/{run.pk}/change/" in page and "succeeded" in page
    # And the action of the list, for several at once.
    with django_capture_on_commit_callbacks(execute=True):
        runner.post(LIST, {"action": "run_now", "_selected_action": [trait.pk], "apply": "1", "audit_reason": "again"})
    assert SqlTraitRun.objects.count() == 2


def test_a_definition_added_in_the_admin_gets_its_source_and_a_bad_query_is_refused(staff):
    adder = staff("sqltraits.view_sqltrait", "sqltraits.add_sqltrait")
    refused = adder.post(f"{LIST}add/", {"key": "tier", **form(query="SELECT 1; DROP TABLE tickets")})
    assert refused.status_code == 200 and "One statement only" in refused.content.decode()
    assert not SqlTrait.objects.exists()
    no_id = adder.post(f"{LIST}add/", {"key": "Bad Key", **form()})
    assert no_id.status_code == 200 and not SqlTrait.objects.exists()
    adder.post(f"{LIST}add/", {"key": "tier", **form()})
    trait = SqlTrait.objects.get()
    assert Source.objects.get(pk=trait.source_id).kind == "sql" and trait.created_by.username == "staff1"
    assert AuditEntry.objects.get().action == "add"


def test_deleting_asks_why_and_disables_the_source(staff, trait):
    deleter = staff("sqltraits.view_sqltrait", "sqltraits.delete_sqltrait")
    deleter.post(f"{LIST}{trait.pk}/delete/", {"post": "yes"})
    assert SqlTrait.objects.exists()
    deleter.post(f"{LIST}{trait.pk}/delete/", {"post": "yes", "audit_reason": "the tier program ended"})
    assert not SqlTrait.objects.exists() and not Source.objects.get(pk=trait.source_id).enabled
    assert AuditEntry.objects.get().reason == "the tier program ended"


def test_runs_are_read_only_with_their_reports(staff, trait):
    run = SqlTraitRun.objects.create(
        trait=trait, trigger="schedule", status="failed", rows=3, skipped=1, error="The query failed: boom",
        skipped_reasons={"null_identifier": {"count": 1, "message": "The identifier is null or empty.",
                                             "examples": ["row 2: null"]}},
    )  # fmt: skip
    viewer = staff("sqltraits.view_sqltraitrun")
    listing = viewer.get("/admin/sqltraits/sqltraitrun/").content.decode()
    assert "The query failed: boom" in listing
    page = viewer.get(f"/admin/sqltraits/sqltraitrun/{run.pk}/change/").content.decode()
    assert "null_identifier" in page and "row 2: null" in page and "The identifier is null or empty." in page
    assert viewer.post(f"/admin/sqltraits/sqltraitrun/{run.pk}/delete/", {"post": "yes"}).status_code == 403
    assert staff("sqltraits.view_sqltrait").get("/admin/sqltraits/sqltraitrun/").status_code == 403
