"""Machine traffic under /v1/ (the tracking edge, the Profile API) goes through a short chain
of middleware: it still gets every security header the admin gets, the Host check, CORS on
the edge, and the 503 page, and never a session cookie."""

from __future__ import annotations

import pytest
from django.test import Client

from profiles.services.tokens import access_token_create
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy")


def test_v1_answers_carry_the_security_headers_the_admin_gets(client: Client, source):
    admin = client.get("/admin/login/")
    token = access_token_create(name="t")[1]
    lookup = client.get("/v1/spaces/default/collections/users/profiles/user_id:nobody/traits",
                        headers={"Authorization": basic_auth(token)})  # fmt: skip
    batch = client.post("/v1/batch", {"batch": []}, content_type="application/json",
                        headers={"Authorization": basic_auth(source.write_key)})  # fmt: skip
    assert lookup.status_code == 404 and batch.status_code == 200
    for header in SECURITY_HEADERS:
        assert admin[header], header
        assert lookup.get(header) == admin[header], header
        assert batch.get(header) == admin[header], header
    assert not lookup.cookies and not batch.cookies


def test_v1_refuses_a_host_it_does_not_serve(client: Client, source):
    assert client.get("/v1/spaces/default/collections/users/profiles/user_id:u1/traits",
                      headers={"Host": "evil.example"}).status_code == 400  # fmt: skip
    assert client.post("/v1/batch", {"batch": []}, content_type="application/json",
                       headers={"Host": "evil.example"}).status_code == 400  # fmt: skip
