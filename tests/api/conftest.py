from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from django.test import Client

from profiles.services.tokens import access_token_create
from tests.conftest import basic_auth

BASE = "/v1/spaces/default/collections/users/profiles"


@pytest.fixture
def token(db: None) -> str:
    return access_token_create(name="tests")[1]


@pytest.fixture
def get(client: Client, token: str) -> Callable[..., Any]:
    """GET with the access token as the Basic username (Segment's way): `get(path, **params)`."""

    def _get(path: str, key: str | None = token, **params: Any) -> Any:
        headers = {"Authorization": basic_auth(key)} if key else {}
        return client.get(path, params or None, headers=headers)  # None keeps a query string in `path`

    return _get


@pytest.fixture
def write_token(db: None) -> str:
    return access_token_create(name="tests that write", can_write=True)[1]


@pytest.fixture
def api(client, write_token, django_capture_on_commit_callbacks):
    """`api(method, path, body, **query)` with a token that may write (or `token=`); what the
    request enqueued on commit runs."""

    def _call(method, path, body=None, token=write_token, **params):
        headers = {"Authorization": f"Bearer {token}"}
        with django_capture_on_commit_callbacks(execute=True):
            if method == "get":
                return client.get(path, params or None, headers=headers)
            return getattr(client, method)(path, data=orjson.dumps(body) if body is not None else None,
                                           content_type="application/json", headers=headers)  # fmt: skip

    return _call
