"""Access tokens: hashed, shown once, revocable, read-only; from the command line and the admin."""

from __future__ import annotations

import hashlib
import re
import time
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from profiles.models import AccessToken
from profiles.services.tokens import access_token_check, access_token_create, access_token_revoke
from tests.api.conftest import BASE
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db


def test_command_prints_the_token_on_its_last_line_and_stores_only_its_hash(client: Client, send):
    send({"type": "identify", "userId": "u1", "traits": {"name": "Ada"}})
    out = StringIO()
    call_command("create_access_token", "CRM sync", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    token = AccessToken.objects.get(name="CRM sync")
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(list(AccessToken.objects.values()))  # the token itself is nowhere
    assert raw.startswith(token.prefix)
    response = client.get(f"{BASE}/user_id:u1/traits", headers={"Authorization": basic_auth(raw)})
    assert response.json()["traits"] == {"name": "Ada"}
    token.refresh_from_db()
    assert token.last_used_at is not None
    with pytest.raises(CommandError):
        call_command("create_access_token", "  ")


def test_revoked_token_is_refused(client: Client, send):
    send({"type": "identify", "userId": "u1"})
    token, raw = access_token_create(name="x")
    path = f"{BASE}/user_id:u1/traits"
    assert client.get(path, headers={"Authorization": basic_auth(raw)}).status_code == 200
    assert access_token_revoke(token_id=token.id) is True
    assert access_token_revoke(token_id=token.id) is False  # idempotent
    response = client.get(path, headers={"Authorization": basic_auth(raw)})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_error"
    assert access_token_check(raw=raw) is None


def test_a_token_revoked_by_another_process_is_refused_here_within_a_second(client: Client, send):
    """Web processes keep a token they checked for up to a second: a revoke made in another
    one (here: the row updated behind this process's back) reaches this one within that."""
    send({"type": "identify", "userId": "u1"})
    token, raw = access_token_create(name="x")
    path, headers = f"{BASE}/user_id:u1/traits", {"Authorization": basic_auth(raw)}
    assert client.get(path, headers=headers).status_code == 200
    AccessToken.objects.filter(id=token.id).update(revoked_at=timezone.now())
    revoked_at = time.monotonic()
    while client.get(path, headers=headers).status_code == 200:
        assert time.monotonic() - revoked_at < 1.0, "still accepted a second after it was revoked"
        time.sleep(0.05)
    assert client.get(path, headers=headers).status_code == 401


def test_admin_creates_a_token_shown_once_on_a_page_never_in_a_cookie_and_revokes_it(client: Client):
    admin = User.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(admin)
    response = client.post("/admin/profiles/accesstoken/add/", {"name": "Warehouse"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    raw = re.search(r'<code id="new-token"[^>]*>(cdp_pat_[^<]+)</code>', response.content.decode()).group(1)
    assert all(raw not in morsel.value for morsel in response.cookies.values())
    assert all(raw not in morsel.value for morsel in client.cookies.values())
    token = AccessToken.objects.get(name="Warehouse")
    assert token.created_by == admin and access_token_check(raw=raw) == token
    page = client.get(f"/admin/profiles/accesstoken/{token.id}/change/").content.decode()
    assert raw not in page and token.prefix in page  # never shown again
    assert raw not in client.get("/admin/profiles/accesstoken/").content.decode()
    client.post(
        "/admin/profiles/accesstoken/",
        {"action": "revoke", "_selected_action": [token.id], "apply": "1", "audit_reason": "rotated"},
        follow=True,
    )
    token.refresh_from_db()
    assert token.revoked_at is not None and access_token_check(raw=raw) is None
