"""One adapter per destination kind: it sends a batch of due deliveries and says what
became of each (`Outcome`). An item it does not answer for stays pending, untried."""

from __future__ import annotations

from destinations.adapters.base import Adapter, Item, Outcome
from destinations.adapters.mailchimp import MailchimpAdapter
from destinations.adapters.mailjet import MailjetAdapter
from destinations.adapters.webhook import WebhookAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "webhook": WebhookAdapter,
    "mailjet": MailjetAdapter,
    "mailchimp": MailchimpAdapter,
}

__all__ = ["ADAPTERS", "Adapter", "Item", "Outcome"]
