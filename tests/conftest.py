"""Shared fixtures.

Tests run on whatever DATABASE_URL and CELERY_BROKER_URL say: PostgreSQL and Redis in CI
(`.ci/run`), SQLite and the filesystem broker on a fresh machine. Tests marked `postgres`
need PostgreSQL; they are skipped on SQLite, and with CDP_REQUIRE_SERVICES=1 (CI) any
skipped test fails the run, so CI can never pass by skipping.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.test import Client, TestCase
from hypothesis import settings as hypothesis_settings

from cdp.celery import app as celery_app
from ingest.models import Source

REQUIRE_SERVICES = os.environ.get("CDP_REQUIRE_SERVICES") == "1"

# CI replays the same generated examples on every run, so a red run is reproducible and a
# green one cannot turn red by chance; locally, hypothesis explores new examples each run.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if REQUIRE_SERVICES:
    hypothesis_settings.load_profile("ci")
ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
CHROMIUM = os.environ.get("CDP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("CDP_ARTIFACTS_DIR", Path(__file__).resolve().parent.parent / "test-artifacts"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if REQUIRE_SERVICES and not ON_POSTGRES:
        raise pytest.UsageError("CDP_REQUIRE_SERVICES=1 needs DATABASE_URL to point at PostgreSQL.")
    if not ON_POSTGRES:
        skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)
    if not CHROMIUM:
        skip = pytest.mark.skip(reason="needs Chromium (apt-get install chromium, or set CDP_CHROMIUM)")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if REQUIRE_SERVICES and skipped and exitstatus == 0:
        reporter.write_line(f"CDP_REQUIRE_SERVICES=1: {skipped} skipped tests count as failures.", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def _celery_isolated() -> Iterator[None]:
    """Tasks run inline unless a test starts a real worker (`celery_worker`); the queue
    is unique to this session so a stale message on a shared broker is never consumed."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_default_queue = f"cdp-test-{uuid.uuid4().hex[:12]}"
    yield


@pytest.fixture(autouse=True)
def _cache_cleared() -> Iterator[None]:
    """Each test starts with an empty cache: the per-minute caps on what the debugger keeps
    count in it, and ids repeat across tests (SQLite rolls its sequences back)."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def source(db: None) -> Source:
    return Source.objects.create(name="Website")


def basic_auth(key: str, colon: bool = True) -> str:
    raw = f"{key}:" if colon else key
    return "Basic " + base64.b64encode(raw.encode()).decode()


class PipelineClient(Client):
    """Django's test client, with the after-commit hand-off that a test's transaction never
    reaches: what a request accepted is processed right after it, as a worker would (tasks
    run inline in tests, `_celery_isolated`)."""

    def request(self, **request: Any) -> Any:
        with TestCase.captureOnCommitCallbacks(execute=True):
            return super().request(**request)


@pytest.fixture
def client() -> Client:
    return PipelineClient()


@pytest.fixture
def post(client: Client) -> Callable[..., Any]:
    """POST a JSON body to a tracking endpoint: `post("/v1/track", body, key=…)`; the
    pipeline then runs on what was accepted (`process=False`: it does not)."""

    def _post(
        path: str,
        body: Any,
        *,
        key: str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        process: bool = True,
    ) -> Any:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        extra = dict(headers or {})
        if key is not None:
            extra["Authorization"] = basic_auth(key)
        sender = client if process else Client()
        return sender.post(path, data=data, content_type=content_type, headers=extra)

    return _post


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never `playwright install`: no internet here).
    Tests that use it are marked `browser` and use `live_server`."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (`test-artifacts/`, or CDP_ARTIFACTS_DIR): kept after the run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def admin_browser(live_server: Any, browser: Any, django_user_model: Any) -> Iterator[Callable[..., Any]]:
    """`admin_browser(path, width=1360)`: a Chromium page logged into the admin as a staff
    superuser ("marketer"), opened at `path` on the live server. Closed after the test."""
    django_user_model.objects.create_superuser("marketer", "m@example.com", "a-long-password")
    contexts: list[Any] = []

    def _open(path: str, width: int = 1360) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/login/?next={path}")
        page.fill("#id_username", "marketer")
        page.fill("#id_password", "a-long-password")
        page.click("input[type=submit]")
        return page

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture
def send(post, source) -> Callable[..., Any]:
    """Send messages through /v1/batch and run the pipeline on them, as the worker would."""

    def _send(*messages: dict[str, Any]) -> Any:
        response = post("/v1/batch", {"batch": list(messages)}, key=source.write_key)
        assert response.status_code == 200, response.content
        assert "rejected" not in response.json(), response.json()
        return response

    return _send


@pytest.fixture
def staff(db: None) -> Callable[..., PipelineClient]:
    """`staff("audiences.view_audience", ...)`: a client logged in as a staff member (not a
    superuser) holding exactly these permissions (`app.codename`, or a codename alone); what
    its requests enqueue runs after them, as a worker would. `.user` is the user."""
    from django.contrib.auth.models import Permission, User

    made = 0

    def _staff(*perms: str) -> PipelineClient:
        nonlocal made
        made += 1
        user = User.objects.create_user(f"staff{made}", password="a-long-password", is_staff=True)
        for perm in perms:
            app, _, codename = perm.rpartition(".")
            found = Permission.objects.filter(codename=codename)
            user.user_permissions.add(found.get(content_type__app_label=app) if app else found.get())
        client = PipelineClient()
        client.force_login(user)
        client.user = user  # type: ignore[attr-defined]
        return client

    return _staff
