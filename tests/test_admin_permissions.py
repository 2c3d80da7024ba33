"""Staff with exactly one permission see what it allows and change nothing else; every change a
person makes in the admin leaves an audit row with who and why."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from profiles.models import Identity, IdentityKind, Merge, Profile
from profiles.services.tokens import access_token_check, access_token_create

pytestmark = pytest.mark.django_db


def _person(user_id: str) -> Profile:
    now = timezone.now()
    profile = Profile.objects.create(first_seen_at=now, last_seen_at=now)
    Identity.objects.create(kind="user_id", value=user_id, profile=profile, first_seen_at=now, last_seen_at=now)
    Identity.objects.create(kind="email", value=f"{user_id}@x.example", profile=profile, first_seen_at=now,
                            last_seen_at=now)  # fmt: skip
    return profile


PROFILES = "/admin/profiles/profile/"


def _merge(client: Client, a: Profile, b: Profile, **extra: str):
    return client.post(PROFILES, {"action": "merge_selected", "_selected_action": [a.pk, b.pk], **extra})


def test_a_view_only_user_cannot_merge_profiles(staff):
    a, b = _person("a"), _person("b")
    viewer = staff("profiles.view_profile")
    assert viewer.get(PROFILES).status_code == 200
    assert "merge_selected" not in viewer.get(PROFILES).content.decode()  # not offered
    _merge(viewer, a, b, apply="1", reason="looks the same", override="on")
    assert not Merge.objects.exists() and Profile.objects.filter(merged_into__isnull=False).count() == 0

    editor = staff("profiles.view_profile", "profiles.change_profile")
    assert "Merge these profiles" in _merge(editor, a, b).content.decode()
    _merge(editor, a, b, apply="1", reason="the same person, said so on the phone", override="on")
    assert Merge.objects.get().loser_id in (a.pk, b.pk)


def test_a_view_only_user_cannot_revoke_tokens_and_a_revoke_is_audited(staff):
    token, raw = access_token_create(name="CRM")
    url = "/admin/profiles/accesstoken/"
    viewer = staff("profiles.view_accesstoken")
    assert viewer.get(url).status_code == 200
    viewer.post(url, {"action": "revoke", "_selected_action": [token.pk], "apply": "1", "audit_reason": "x"})
    assert access_token_check(raw=raw) == token

    editor = staff("profiles.view_accesstoken", "profiles.change_accesstoken")
    confirm = editor.post(url, {"action": "revoke", "_selected_action": [token.pk]})
    assert confirm.status_code == 200 and "Reason" in confirm.content.decode()  # asks why first
    editor.post(url, {"action": "revoke", "_selected_action": [token.pk], "apply": "1", "audit_reason": ""})
    assert access_token_check(raw=raw) == token  # no reason, no revoke
    editor.post(url, {"action": "revoke", "_selected_action": [token.pk], "apply": "1",
                      "audit_reason": "the CRM was retired"})  # fmt: skip
    assert access_token_check(raw=raw) is None
    entry = AuditEntry.objects.get(action="revoke")
    assert (entry.actor.username, entry.reason, entry.target_id) == ("staff2", "the CRM was retired", str(token.pk))


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_identity_page_checks_its_permissions(staff, method):
    person = _person("ana")
    url = f"{PROFILES}{person.pk}/identity/"
    split = {"identifier": ["email:ana@x.example"], "reason": "not hers"}
    nobody = staff("ingest.view_source")
    answer = nobody.get(url) if method == "get" else nobody.post(url, split)
    assert answer.status_code == 403
    viewer = staff("profiles.view_profile")
    if method == "get":
        assert viewer.get(url).status_code == 200
    else:
        assert viewer.post(url, split).status_code == 403
        assert Profile.objects.count() == 1
        staff("profiles.view_profile", "profiles.change_profile").post(url, split)
        assert Profile.objects.count() == 2  # split


@pytest.mark.parametrize(
    "path",
    [
        "/admin/ingest/source/debugger/",
        "/admin/ingest/source/{pk}/debugger/",
        "/admin/ingest/source/unknown/debugger/",
        "/admin/ingest/source/email-report/",
        "/admin/ingest/source/email-report/campaign/?campaign=spring",
    ],
)
def test_the_debugger_and_campaign_report_need_the_source_view_permission(staff, source, path):
    path = path.format(pk=source.pk)
    assert staff("profiles.view_profile").get(path).status_code == 403
    assert staff("ingest.view_source").get(path).status_code == 200


def test_the_campaign_people_page_needs_to_see_people_too(staff, source):
    path = "/admin/ingest/source/email-report/people/?campaign=spring&metric=opened"
    assert staff("profiles.view_profile").get(path).status_code == 403
    assert staff("ingest.view_source").get(path).status_code == 403
    assert staff("ingest.view_source", "profiles.view_profile").get(path).status_code == 200


def test_identity_settings_edited_in_the_list_ask_why_and_are_audited(staff):
    kind = IdentityKind.objects.get(kind="email")
    url = "/admin/profiles/identitykind/"
    rows = list(IdentityKind.objects.order_by("priority", "kind"))  # the list's order
    form = {"form-TOTAL_FORMS": str(len(rows)), "form-INITIAL_FORMS": str(len(rows)), "_save": "Save"}
    for i, row in enumerate(rows):
        priority = "" if row.priority is None else str(row.priority)
        limit = str(8 if row.pk == kind.pk else row.limit)
        form |= {f"form-{i}-id": str(row.pk), f"form-{i}-priority": priority, f"form-{i}-limit": limit,
                 f"form-{i}-window": row.window}  # fmt: skip
    viewer = staff("profiles.view_identitykind")
    viewer.post(url, form)
    kind.refresh_from_db()
    assert kind.limit == 5
    editor = staff("profiles.view_identitykind", "profiles.change_identitykind")
    assert "Reason" in editor.get(url).content.decode()
    editor.post(url, form)  # no reason: refused
    kind.refresh_from_db()
    assert kind.limit == 5
    editor.post(url, {**form, "audit_reason": "shared inboxes at Acme"})
    kind.refresh_from_db()
    assert kind.limit == 8
    entry = AuditEntry.objects.get(target_type="profiles.identitykind")
    assert entry.reason == "shared inboxes at Acme" and entry.changes == {"limit": [5, 8]}


def test_source_changes_ask_why_and_never_log_a_secret(staff, source):
    url = f"/admin/ingest/source/{source.pk}/change/"
    data = {"name": "Website", "kind": "http", "enabled": "on", "allowed_redirect_domains": "shop.example",
            "signing_key": "s3cret-key", "webhook_url": ""}  # fmt: skip
    viewer = staff("ingest.view_source")
    assert "Reason" not in viewer.get(url).content.decode()
    viewer.post(url, {**data, "audit_reason": "x"})
    source.refresh_from_db()
    assert source.allowed_redirect_domains == ""
    editor = staff("ingest.view_source", "ingest.change_source")
    answer = editor.post(url, data)
    assert answer.status_code == 200 and "This field is required" in answer.content.decode()
    editor.post(url, {**data, "audit_reason": "links to the shop"})
    source.refresh_from_db()
    assert source.allowed_redirect_domains == "shop.example" and source.signing_key == "s3cret-key"
    entry = AuditEntry.objects.get(target_type="ingest.source")
    assert entry.reason == "links to the shop" and entry.changes["allowed_redirect_domains"] == ["", "shop.example"]
    assert "s3cret-key" not in str(entry.changes)


def test_profile_deletes_ask_why_and_are_audited(staff):
    person = _person("gone")
    url = f"{PROFILES}{person.pk}/delete/"
    staff("profiles.view_profile").post(url, {"post": "yes", "audit_reason": "x"})
    assert Profile.objects.filter(pk=person.pk).exists()
    deleter = staff("profiles.view_profile", "profiles.delete_profile")
    assert "Reason" in deleter.get(url).content.decode()
    deleter.post(url, {"post": "yes"})
    assert Profile.objects.filter(pk=person.pk).exists()
    deleter.post(url, {"post": "yes", "audit_reason": "erasure request #42"})
    assert not Profile.objects.filter(pk=person.pk).exists()
    entry = AuditEntry.objects.get(action="delete")
    assert (entry.target_type, entry.target_id, entry.reason) == ("profiles.profile", str(person.pk),
                                                                  "erasure request #42")  # fmt: skip


def test_deleting_selected_profiles_asks_why(staff):
    a, b = _person("a"), _person("b")
    deleter = staff("profiles.view_profile", "profiles.delete_profile")
    selected = {"action": "delete_selected", "_selected_action": [a.pk, b.pk], "post": "yes"}
    assert "Reason" in deleter.post(PROFILES, selected).content.decode()
    assert Profile.objects.count() == 2
    deleter.post(PROFILES, {**selected, "audit_reason": "test accounts"})
    assert Profile.objects.count() == 0
    assert AuditEntry.objects.filter(action="delete", reason="test accounts").count() == 2


def test_the_audit_log_is_read_only(staff):
    entry = AuditEntry.objects.create(action="change", target_type="x.y", reason="r")
    viewer = staff("audit.view_auditentry")
    assert viewer.get("/admin/audit/auditentry/").status_code == 200
    assert viewer.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_identity_settings_can_be_added_only_with_the_add_permission(staff):
    from profiles.models import IdentityConfig

    IdentityConfig.objects.all().delete()  # none yet: the one row may be added
    assert staff("profiles.view_identityconfig").get("/admin/profiles/identityconfig/add/").status_code == 403
    assert staff("profiles.add_identityconfig").get("/admin/profiles/identityconfig/add/").status_code == 200
