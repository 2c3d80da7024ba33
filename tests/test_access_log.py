"""Request logs never show a secret: gunicorn's access log as the Docker entrypoint runs it
(the same gunicorn.conf.py as `dev.py start`, whose log .ci/smoke checks), and the pure
redaction underneath."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cdp.logredact import query_redacted, request_line_redacted, url_redacted
from tests.outage import closed_port

ROOT = Path(__file__).resolve().parent.parent


PIXEL = "/v1/pixel/track"
CLICK = "/v1/click?writeKey={}&url=https%3A%2F%2Fshop.example%2F&sig={}"


@pytest.mark.parametrize(
    ("given", "logged"),
    [
        (f"{PIXEL}?writeKey=K1&userId=u1&event=Opened", f"{PIXEL}?writeKey=[redacted]&userId=u1&event=Opened"),
        (f"{PIXEL}?data=eyJ3cml0ZUtleSI6IksifQ", f"{PIXEL}?data=[redacted]"),
        ("/v1/webhooks/mailchimp/3?secret=S3", "/v1/webhooks/mailchimp/3?secret=[redacted]"),
        (CLICK.format("K", "abc"), CLICK.format("[redacted]", "[redacted]")),
        ("/x?access_token=t&API-Key=k&Token=z&next=abc", "/x?access_token=[redacted]&API-Key=[redacted]&Token="
         "[redacted]&next=abc"),
        ("https://cdp:S3@cdp.example.com/v1/webhooks/mailjet/3", "https://cdp:[redacted]@cdp.example.com/v1/webhooks/"
         "mailjet/3"),
        ("/v1/batch", "/v1/batch"),
        ("/search?q=&writeKey", "/search?q=&writeKey"),
    ],
)  # fmt: skip
def test_urls_lose_their_secret_values_and_keep_the_rest(given, logged):
    assert url_redacted(given) == logged


def test_request_lines_and_queries():
    assert request_line_redacted("GET /p?secret=x HTTP/1.1") == "GET /p?secret=[redacted] HTTP/1.1"
    assert query_redacted("a=1&sig=2") == "a=1&sig=[redacted]"


def _free_port() -> int:
    return closed_port()


def test_the_docker_entrypoints_access_log_shows_no_secret(tmp_path):
    """`docker/entrypoint.sh web` for real (on SQLite, migrations included), then requests
    carrying every kind of secret: the log names each path and none of the secrets."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}}
    env.update(PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}", PORT=str(port), CDP_VAR_DIR=str(tmp_path),
               DJANGO_SETTINGS_MODULE="cdp.settings", WEB_CONCURRENCY="1", SECRET_KEY="t" * 50)  # fmt: skip
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        server = subprocess.Popen(["sh", str(ROOT / "docker" / "entrypoint.sh"), "web"], cwd=tmp_path, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the entrypoint did not serve within 60 s:\n" + log.read_text()
                time.sleep(0.2)
        token = "cdp_pat_SECRETTOKENVALUE"
        requests = [
            urllib.request.Request(f"{base}/v1/pixel/track?writeKey=WRITEKEYVALUE&userId=u1&event=Opened"),
            urllib.request.Request(f"{base}/v1/webhooks/mailchimp/1?secret=MAILCHIMPSECRET"),
            urllib.request.Request(f"{base}/v1/click?writeKey=CLICKKEY&url=https%3A%2F%2Fshop.example&sig=SIGVALUE"),
            urllib.request.Request(
                f"{base}/v1/spaces/default/collections/users/profiles/user_id:u1/traits",
                headers={
                    "Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode(),
                    "Referer": "https://mail.example/open?token=REFERERTOKEN",
                },
            ),
        ]
        for request in requests:
            with contextlib.suppress(urllib.error.HTTPError):  # 4xx here: only the log matters
                urllib.request.urlopen(request, timeout=10).read()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
    text = log.read_text()
    for path in ("/v1/pixel/track", "/v1/webhooks/mailchimp/1", "/v1/click", "/collections/users/profiles/"):
        assert path in text, text
    for secret in ("WRITEKEYVALUE", "MAILCHIMPSECRET", "CLICKKEY", "SIGVALUE", token, "REFERERTOKEN"):
        assert secret not in text, f"{secret} is in the access log:\n{text}"
    assert "writeKey=[redacted]" in text and "secret=[redacted]" in text
