"""Fixtures of the destinations' tests: the stand-in servers, and destinations aimed at them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from destinations.delivery import destination_drain
from destinations.models import Delivery, Destination
from destinations.services import destination_create
from tests.audiences.conftest import define  # noqa: F401 (a fixture the flows use)
from tests.destinations.standins import MailchimpStandIn, MailjetStandIn, Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def mailjet() -> Iterator[MailjetStandIn]:
    s = MailjetStandIn()
    yield s
    s.close()


@pytest.fixture
def mailchimp() -> Iterator[MailchimpStandIn]:
    s = MailchimpStandIn()
    yield s
    s.close()


@pytest.fixture
def webhook(db: None, sink: Sink) -> Destination:
    return destination_create(data={"name": "Hook", "kind": "webhook", "audiences": "all", "traits": "all",
                                    "settings": {"urls": [f"{sink.url}/hook"], "shared_secret": "s3cret"}})  # fmt: skip


@pytest.fixture
def drain() -> Callable[..., Any]:
    """Drain a destination as its task does, right now (retries made due first when asked)."""

    def _drain(dest: Destination, *, due_now: bool = False) -> Any:
        if due_now:
            Delivery.objects.filter(destination=dest, status="pending").update(next_attempt_at="2000-01-01T00:00Z")
            Destination.objects.filter(pk=dest.pk).update(paused_until=None)
        return destination_drain(destination_id=dest.pk)

    return _drain
