from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def send(post, source) -> Callable[..., Any]:
    """Send messages through /v1/batch and run the pipeline on them, as the worker would."""

    def _send(*messages: dict[str, Any]) -> Any:
        response = post("/v1/batch", {"batch": list(messages)}, key=source.write_key)
        assert response.status_code == 200, response.content
        assert "rejected" not in response.json(), response.json()
        return response

    return _send
