"""A realistic person for the admin profile page tests, the browser test and the README's
screenshot: Ana browses anonymously, signs up, reads two campaign emails, browses on her phone,
and is merged when the phone gives her email; then she orders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "segment"
LAPTOP, PHONE = "laptop-7f3a91", "phone-91c2e0"


def _page(anon: str, t: str, name: str, url: str, mid: str, user: str | None = None) -> dict[str, Any]:
    return {"type": "page", "anonymousId": anon, "userId": user, "name": name, "timestamp": t, "messageId": mid,
            "properties": {"url": url, "title": name}}  # fmt: skip


def _track(t: str, event: str, props: dict[str, Any], mid: str, anon: str | None = None) -> dict[str, Any]:
    return {"type": "track", "userId": "ana-1042", "anonymousId": anon, "event": event, "properties": props,
            "timestamp": t, "messageId": mid}  # fmt: skip


def ana_messages() -> list[list[dict[str, Any]]]:
    """Batches, in the order they arrive (the merge needs the phone's profile to exist first)."""
    clicked = json.loads((FIXTURES / "email-link-clicked.json").read_text())  # Segment's email spec sample
    campaign = {k: clicked["properties"][k] for k in ("email_id", "email_subject", "campaign_id", "campaign_name")}
    return [
        [
            _page(LAPTOP, "2026-11-10T09:12:00Z", "Home", "https://shop.example.com/", "m-home"),
            _page(LAPTOP, "2026-11-10T09:14:00Z", "Winter sale", "https://shop.example.com/winter-sale", "m-sale"),
            _track(
                "2026-11-10T09:20:00Z",
                "Product Viewed",
                {"product_id": "sku-88", "name": "Merino scarf", "price": 39},
                "m-viewed",
                LAPTOP,
            )
            | {"userId": None},
            {
                "type": "identify",
                "userId": "ana-1042",
                "anonymousId": LAPTOP,
                "timestamp": "2026-11-10T09:31:00Z",
                "messageId": "m-signup",
                "traits": {
                    "name": "Ana Lima",
                    "email": "ana@lima.example",
                    "plan": "pro",
                    "city": "Porto",
                    "company": {"name": "Lima & Filhos"},
                },
            },
            _track("2026-11-11T08:02:00Z", "Email Delivered", campaign, "m-delivered"),
            _track("2026-11-11T08:40:00Z", "Email Opened", campaign, "m-opened"),
            _track("2026-11-11T08:41:00Z", "Email Link Clicked", clicked["properties"], "m-clicked"),
        ],
        [_page(PHONE, "2026-11-12T19:05:00Z", "Merino scarf", "https://shop.example.com/p/sku-88", "m-phone")],
        [
            {
                "type": "identify",
                "anonymousId": PHONE,
                "timestamp": "2026-11-12T19:07:00Z",
                "messageId": "m-merge",
                "traits": {"email": "ana@lima.example", "phone": "+351 912 000 111"},
            },
            _track(
                "2026-11-12T19:12:00Z",
                "Order Completed",
                {"order_id": "o-5521", "revenue": 89.5, "currency": "EUR"},
                "m-order",
                PHONE,
            ),
        ],
    ]


def send_ana(send: Any) -> None:
    for batch in ana_messages():
        send(*batch)
