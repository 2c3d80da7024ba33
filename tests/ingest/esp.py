"""Helpers for the email-provider webhook tests: the provider samples (copied into
`tests/fixtures/esp/`), and signing as each provider does (with keys made here)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from ingest.models import Source
from ingest.providers.ses import canonical_string

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "esp"
MAILGUN_KEY = "8f2c41d7a9e05b36c1d4e7f0a2b58c93"  # the samples' README: every mailgun-*.json verifies with it
BASE_URL = "https://cdp.example.com"


def sample(name: str) -> Any:
    text = (FIXTURES / name).read_text()
    return text if name.endswith(".txt") else json.loads(text)


def raw_sample(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def basic(url: str) -> str:
    parts = urlsplit(url)
    return "Basic " + base64.b64encode(f"{parts.username}:{parts.password}".encode()).decode()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- SendGrid: ECDSA P-256 over timestamp + raw body -----------------------------------------


class SendGridSigner:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()  # what SendGrid's settings page shows

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        """Signed as SendGrid signs a delivery: now (or at `timestamp`, Unix seconds)."""
        timestamp = timestamp or str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


# --- Mailgun: HMAC-SHA256 of timestamp + token, in the body's `signature` block -------------


def mailgun_signed(body: Any, key: str = MAILGUN_KEY, *, at: float | None = None, token: str | None = None) -> bytes:
    """A Mailgun webhook body signed as Mailgun signs a delivery: a fresh timestamp (or `at`)
    and a new random token. The samples' own signatures are from 2025: too old to accept."""
    data = orjson.loads(body) if isinstance(body, bytes) else dict(body)
    timestamp, token = str(int(at if at is not None else time.time())), token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    data["signature"] = {"timestamp": timestamp, "token": token, "signature": signature}
    return orjson.dumps(data)


# --- Mandrill: base64 HMAC-SHA1 over the URL as registered + sorted form fields --------------


def mandrill_signature(key: str, url: str, form: dict[str, str]) -> str:
    signed = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


# --- SNS: RSA over the canonical string, with a certificate at an AWS URL ---------------------

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"


class SnsSigner:
    """Signs as SNS does, with a key and self-signed certificate made here; `fetch` is the
    fake for the certificate download and the SubscribeURL GET (records what it fetched)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.pem = cert.public_bytes(serialization.Encoding.PEM)
        self.fetched: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url == CERT_URL:
            return self.pem
        if url.startswith("https://sns.") and "Action=ConfirmSubscription" in url:
            return b"<ConfirmSubscriptionResponse/>"
        raise OSError(f"unexpected fetch {url}")

    def sign(self, envelope: dict[str, Any], version: str = "2") -> dict[str, Any]:
        envelope = {**envelope, "SignatureVersion": version, "SigningCertURL": CERT_URL}
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(canonical_string(envelope), padding.PKCS1v15(), algorithm)
        envelope["Signature"] = base64.b64encode(signature).decode()
        return envelope


def provider_source(kind: str, **fields: Any) -> Source:
    fields.setdefault("name", f"{kind} source")
    return Source.objects.create(kind=kind, **fields)


# --- A Mailjet campaign, built from the samples ------------------------------------------------

PROXY_AGENT = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
SCANNER_AGENT = "Barracuda Sentinel (EE)"
SPRING_START = 1741960800  # 2025-03-14 14:00 UTC, the samples' send time


def mailjet_campaign(people: int = 10, campaign: str = "spring_sale_2025") -> list[dict[str, Any]]:
    """Events of one send to `people` recipients, as Mailjet's grouped webhook posts them:
    everyone delivered (Mailjet's `sent`); the first 6 open (2 of them only through an
    image proxy, 1 of the humans twice); 3 click (1 of them a link scanner); person 7
    bounces, 8 complains, 9 unsubscribes."""
    out: list[dict[str, Any]] = []

    def event(name: str, i: int, minutes: int, **extra: Any) -> dict[str, Any]:
        base = {k: v for k, v in sample(f"mailjet-{name}.json").items() if k not in ("url", "agent", "ip", "geo")}
        base.update(
            time=SPRING_START + minutes * 60, email=f"reader{i}@example.com", customcampaign=campaign,
            MessageID=288230377001234567 + i, Payload=json.dumps({"cdp_user_id": f"u_{i}"}), **extra,
        )  # fmt: skip
        return base

    for i in range(people):
        out.append(event("sent", i, 0))
    human = sample("mailjet-open.json")["agent"]
    for i in range(6):
        out.append(event("open", i, 30 + 40 * i, agent=PROXY_AGENT if i >= 4 else human, ip="203.0.113.24"))
    out.append(event("open", 0, 300, agent=human, ip="203.0.113.24"))
    for i, agent in ((0, human), (1, human), (4, SCANNER_AGENT)):
        out.append(event("click", i, 60 + 40 * i, agent=agent, url="https://shop.example.com/spring-sale"))
    out.append(event("bounce", 7, 1))
    out.append(event("spam", 8, 600))
    out.append(event("unsub", 9, 400, mj_list_id=10234))
    return out
