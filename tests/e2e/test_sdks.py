"""Real, unchanged server-side SDKs from PyPI against the live server.

`segment-analytics-python` (plain JSON, or gzip) and `rudder-sdk-python` (gzip by
default) post to /v1/batch with Basic auth; Segment also puts the write key in the body.
Every call must be stored exactly once with what the caller passed, replays must store
nothing, and a bad write key must reach the SDK's error path with nothing stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rudderstack.analytics.client as rudder_client
import rudderstack.analytics.request as rudder_request
import rudderstack.analytics.version as rudder_version
import segment.analytics.client as segment_client
import segment.analytics.request as segment_request
import segment.analytics.version as segment_version
from django.utils import timezone

from ingest.models import Source
from profiles.models import Event

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# In the past, with milliseconds (Segment's client sends `timespec="milliseconds"`).
ORIGINAL = datetime(2024, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)
CONTEXT = {"ip": "203.0.113.9", "locale": "fr-FR", "app": {"name": "Shop", "build": 42}}
INTEGRATIONS = {"All": False, "Mixpanel": True}


@dataclass(frozen=True)
class Sdk:
    """One SDK configuration: how to build its client, and what it sends."""

    id: str
    client_class: type
    api_error: type[Exception]
    library: dict[str, str]
    options: dict[str, Any]
    extra: dict[str, Any]  # top-level fields the SDK adds to every message
    # RudderStack's identify sends its traits as `context.traits`, not top-level `traits`;
    # the edge stores messages as sent (profiles.identity reads both places).
    identify_traits_in_context: bool = False

    def client(self, write_key: str, host: str, errors: list[Any], **options: Any) -> Any:
        def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
            errors.append((error, batch))

        return self.client_class(write_key, host=host, on_error=on_error, **{**self.options, **options})


SEGMENT_LIBRARY = {"name": "analytics-python", "version": segment_version.VERSION}
RUDDER_LIBRARY = {"name": "analytics-python", "version": rudder_version.VERSION}
SDKS = [
    Sdk("segment", segment_client.Client, segment_request.APIError, SEGMENT_LIBRARY, {}, {}),
    Sdk("segment-gzip", segment_client.Client, segment_request.APIError, SEGMENT_LIBRARY, {"gzip": True}, {}),
    Sdk("rudderstack", rudder_client.Client, rudder_request.APIError, RUDDER_LIBRARY, {}, {"channel": "server"},
        identify_traits_in_context=True),
    Sdk("rudderstack-plain", rudder_client.Client, rudder_request.APIError, RUDDER_LIBRARY, {"gzip": False},
        {"channel": "server"}, identify_traits_in_context=True),
]  # fmt: skip


@pytest.fixture(params=SDKS, ids=lambda sdk: sdk.id)
def sdk(request: pytest.FixtureRequest) -> Sdk:
    return request.param


@pytest.fixture(autouse=True)
def _hang_up() -> Iterator[None]:
    """Both SDKs post through a module-level `requests` session that keeps its connection
    to the live server open. Close those connections after each test, so that the live
    server's request threads end and close their database connections (PostgreSQL cannot
    drop the test database while they are open). `Session.close()` alone is not enough:
    urllib3 2 forgets its pools without closing them, and a socket still referenced (by
    an `APIError` the test kept, say) then stays open."""
    yield
    for session in (segment_request._session, rudder_request._session):
        for adapter in session.adapters.values():
            pools = adapter.poolmanager.pools
            for key in pools.keys():  # noqa: SIM118 (the container cannot be iterated)
                pools[key].close()
        session.close()


@pytest.fixture
def errors() -> list[Any]:
    """What the SDK's `on_error` received, as `(error, batch)` pairs."""
    return []


def every_call() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """One call of each kind: (method, SDK arguments, the columns it must be stored with)."""
    return [
        ("identify", {"user_id": "u-1", "traits": {"email": "ada@example.com", "plan": "pro"}},
         {"type": "identify", "traits": {"email": "ada@example.com", "plan": "pro"}}),
        ("track", {"user_id": "u-1", "event": "Order Completed", "properties": {"total": 99.5, "items": [1, 2]}},
         {"type": "track", "event": "Order Completed",
          "properties": {"total": 99.5, "items": [1, 2]}}),
        ("track", {"anonymous_id": "anon-7", "event": "Cart Viewed"},
         {"type": "track", "event": "Cart Viewed"}),
        ("page", {"user_id": "u-1", "category": "Docs", "name": "Pricing", "properties": {"path": "/pricing"}},
         {"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}, "extra": {"category": "Docs"}}),
        ("screen", {"anonymous_id": "anon-7", "category": "Onboarding", "name": "Home", "properties": {"tab": 2}},
         {"type": "screen", "name": "Home", "properties": {"tab": 2}, "extra": {"category": "Onboarding"}}),
        ("group", {"user_id": "u-1", "group_id": "acme", "traits": {"seats": 12}},
         {"type": "group", "group_id": "acme", "traits": {"seats": 12}}),
        ("alias", {"previous_id": "anon-7", "user_id": "u-1"},
         {"type": "alias", "previous_id": "anon-7"}),
    ]  # fmt: skip


def send_every_call(client: Any, tag: str) -> dict[str, dict[str, Any]]:
    """Make each call with a message id of ours; return the expected columns by id."""
    expected = {}
    for n, (method, arguments, columns) in enumerate(every_call()):
        message_id = f"{tag}-{method}-{n}-{uuid.uuid4().hex[:8]}"
        common = {"context": dict(CONTEXT), "integrations": dict(INTEGRATIONS), "timestamp": ORIGINAL}
        getattr(client, method)(message_id=message_id, **common, **arguments)
        identity = {"user_id": arguments.get("user_id"), "anonymous_id": arguments.get("anonymous_id")}
        expected[message_id] = {**identity, **columns}
    return expected


def assert_stored(sdk: Sdk, expected: dict[str, dict[str, Any]], source: Source) -> None:
    """Each expected message is stored exactly once, with the columns the call implies."""
    rows = list(Event.objects.filter(message_id__in=expected))
    by_id: dict[str, list[Event]] = {}
    for row in rows:
        by_id.setdefault(row.message_id, []).append(row)
    missing = sorted(set(expected) - set(by_id))
    assert not missing, f"{len(missing)} of {len(expected)} messages were not stored, e.g. {missing[:3]}"
    repeated = {m: len(r) for m, r in by_id.items() if len(r) > 1}
    assert not repeated, f"stored more than once: {repeated}"

    now = timezone.now()
    for message_id, columns in expected.items():
        event = by_id[message_id][0]
        stored = {
            "type": event.type, "event": event.event, "name": event.name, "user_id": event.user_id,
            "anonymous_id": event.anonymous_id, "group_id": event.group_id, "previous_id": event.previous_id,
            "properties": event.properties, "traits": event.traits, "extra": event.extra,
        }  # fmt: skip
        wanted = {
            "event": None, "name": None, "user_id": None, "anonymous_id": None, "group_id": None,
            "previous_id": None, "properties": {}, "traits": {}, **columns,
            "extra": {**sdk.extra, **columns.get("extra", {})} or None,
        }  # fmt: skip
        context = {**CONTEXT, "library": sdk.library}
        if event.type == "identify" and sdk.identify_traits_in_context:
            context["traits"], wanted["traits"] = wanted["traits"], {}
        assert stored == wanted, message_id
        assert event.source_id == source.id
        assert event.context == context
        assert event.integrations == INTEGRATIONS
        assert event.original_timestamp == ORIGINAL
        # timestamp = receivedAt - (sentAt - originalTimestamp): the SDK's clock is ours,
        # so only the request's transit separates it from the original timestamp.
        assert timedelta(0) <= event.timestamp - ORIGINAL < timedelta(seconds=5), event.timestamp
        assert event.sent_at is not None and abs(event.sent_at - now) < timedelta(minutes=1)
        assert abs(event.received_at - now) < timedelta(minutes=1)


def test_single_calls_are_stored_once_with_their_fields(
    live_server: Any, source: Source, sdk: Sdk, errors: list[Any]
) -> None:
    client = sdk.client(source.write_key, live_server.url, errors, sync_mode=True)

    expected = send_every_call(client, "single")

    assert not errors
    assert_stored(sdk, expected, source)
    assert Event.objects.count() == len(expected)


def test_batches_from_the_background_thread_are_stored_once(
    live_server: Any, source: Source, sdk: Sdk, errors: list[Any]
) -> None:
    client = sdk.client(source.write_key, live_server.url, errors, sync_mode=False, upload_size=50, max_retries=2)
    expected: dict[str, dict[str, Any]] = {}
    for round_ in range(17):  # 17 rounds of 7 calls: 119 messages, in batches of up to 50
        expected |= send_every_call(client, f"batch{round_}")
    client.flush()
    client.join()

    assert not errors, errors
    assert len(expected) == 119
    assert_stored(sdk, expected, source)
    assert Event.objects.count() == 119


def test_replayed_messages_store_nothing_new(live_server: Any, source: Source, sdk: Sdk, errors: list[Any]) -> None:
    client = sdk.client(source.write_key, live_server.url, errors, sync_mode=True)
    expected = send_every_call(client, "replay")
    first = {e.message_id: (e.id, e.properties, e.timestamp) for e in Event.objects.all()}

    # The same message ids again, as a client retrying after a lost response would, but
    # with other properties: the first copy stays as it was.
    for n, (method, arguments, _) in enumerate(every_call()):
        message_id = next(m for m in expected if m.startswith(f"replay-{method}-{n}-"))
        if "properties" in arguments:
            arguments = {**arguments, "properties": {"replayed": True}}
        getattr(client, method)(message_id=message_id, timestamp=ORIGINAL, **arguments)
    batcher = sdk.client(source.write_key, live_server.url, errors, sync_mode=False, upload_size=3, max_retries=2)
    for message_id in expected:
        batcher.track(user_id="u-1", event="Replayed", message_id=message_id)
    batcher.flush()
    batcher.join()

    assert not errors, errors
    assert {e.message_id: (e.id, e.properties, e.timestamp) for e in Event.objects.all()} == first


@pytest.fixture(params=["unknown", "disabled"])
def bad_key(request: pytest.FixtureRequest, source: Source) -> str:
    if request.param == "unknown":
        return "not-a-write-key-" + uuid.uuid4().hex
    source.enabled = False
    source.save(update_fields=["enabled"])
    return source.write_key


def test_a_bad_write_key_is_reported_to_the_sdk_and_nothing_is_stored(
    live_server: Any, bad_key: str, sdk: Sdk, errors: list[Any]
) -> None:
    client = sdk.client(bad_key, live_server.url, errors, sync_mode=False, upload_size=10, max_retries=2)
    for n in range(5):
        client.track(user_id="u-1", event="Order Completed", message_id=f"bad-{n}")
    client.flush()
    client.join()

    assert errors, "on_error was not called"
    assert all(getattr(error, "status", None) == 401 for error, _ in errors), errors
    assert sum(len(batch) for _, batch in errors) == 5
    # In sync mode the SDK raises instead of calling on_error.
    with pytest.raises(sdk.api_error) as raised:
        sdk.client(bad_key, live_server.url, errors, sync_mode=True).identify(user_id="u-1", traits={"a": 1})
    assert raised.value.status == 401
    assert Event.objects.count() == 0
