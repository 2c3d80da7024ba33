from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
