"""The destination form of the admin: plain fields per kind (never JSON), read into the same
body the REST API takes and checked by `definition_parse`, whose error path puts each
message on its field. Secrets are password inputs that show nothing; left blank, they stay."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from destinations.adapters.mailchimp import STATUSES_IF_NEW
from destinations.definitions import DestinationError, definition_parse
from destinations.models import Destination
from destinations.services import definition_of

KIND_FIELDS = {
    "webhook": ("urls", "shared_secret"),
    "mailjet": ("api_key", "api_secret", "lists", "base_url"),
    "mailchimp": ("api_key", "list_id", "merge_fields", "status_if_new", "base_url"),
}
# Where an error of the body goes on the form.
_FIELD_OF = {"audiences": "audience_keys", "traits": "trait_keys", "events.sources": "event_sources",
             "events.names": "event_names", "events": "event_sources", "settings": "urls"}  # fmt: skip


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text or "") if w]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _pairs(text: str, field: str) -> dict[str, str]:
    out = {}
    for line in _lines(text):
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise forms.ValidationError({field: f"Write one pair a line, as key = value: {line[:80]!r}."})
        out[key.strip()] = value.strip()
    return out


def _secret() -> forms.CharField:
    return forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                           help_text="Write-only: never shown. Leave blank to keep the one stored.")  # fmt: skip


class DestinationForm(forms.ModelForm[Destination]):
    kind = forms.ChoiceField(choices=Destination.Kind.choices)
    all_audiences = forms.BooleanField(required=False, label="Every audience")
    audience_keys = forms.CharField(required=False, label="Audiences", help_text="Audience keys, by commas or lines.",
                                    widget=forms.Textarea(attrs={"rows": 2}))  # fmt: skip
    all_traits = forms.BooleanField(required=False, label="Every computed trait")
    trait_keys = forms.CharField(required=False, label="Computed traits", widget=forms.Textarea(attrs={"rows": 2}))
    event_sources = forms.CharField(required=False, help_text="Webhooks: the ids of the sources whose events it takes.")
    event_names = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                  help_text="One event name a line; empty: every event of those sources.")  # fmt: skip
    consent_categories = forms.CharField(required=False, help_text="Consent categories it needs, by commas.")
    urls = forms.CharField(required=False, label="URLs", widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Webhook: up to 5, one a line.")  # fmt: skip
    shared_secret = _secret()
    api_key = _secret()
    api_secret = _secret()
    lists = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                            help_text="Mailjet: one audience a line, as audience_key = contact list id.")  # fmt: skip
    list_id = forms.CharField(required=False, label="Audience (list) id", help_text="Mailchimp.")
    merge_fields = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                   help_text="Mailchimp: one trait a line, as trait = MERGE_TAG.")  # fmt: skip
    status_if_new = forms.ChoiceField(
        required=False, choices=[(s, s) for s in STATUSES_IF_NEW],
        help_text="Mailchimp: a new member's status (an existing one keeps theirs).",
    )  # fmt: skip
    base_url = forms.URLField(
        required=False, assume_scheme="https",
        help_text="Empty: the provider's public API. A proxy or a test server otherwise.",
    )  # fmt: skip

    class Meta:
        model = Destination
        fields = ["name", "kind", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        d = self.instance
        if d.pk:
            self.fields["kind"].disabled = True
            s = d.settings or {}
            self.initial.update({
                "all_audiences": d.audiences == "all",
                "audience_keys": "" if d.audiences == "all" else ", ".join(d.audiences),
                "all_traits": d.traits == "all", "trait_keys": "" if d.traits == "all" else ", ".join(d.traits),
                "event_sources": ", ".join(str(x) for x in (d.events or {}).get("sources", [])),
                "event_names": "\n".join((d.events or {}).get("names", [])),
                "consent_categories": ", ".join(d.consent_categories), "urls": "\n".join(s.get("urls", [])),
                "lists": "\n".join(f"{k} = {v}" for k, v in (s.get("lists") or {}).items()),
                "list_id": s.get("list_id", ""),
                "merge_fields": "\n".join(f"{k} = {v}" for k, v in (s.get("merge_fields") or {}).items()),
                "status_if_new": s.get("status_if_new", "subscribed"), "base_url": s.get("base_url", ""),
            })  # fmt: skip

    def body(self) -> dict[str, Any]:
        """The form as the REST API's body."""
        c: dict[str, Any] = {k: ("" if v is None else v) for k, v in self.cleaned_data.items()}
        kind = c.get("kind") or self.instance.kind
        settings: dict[str, Any] = {}
        for name in KIND_FIELDS.get(kind, ()):
            value = str(c.get(name) or "")
            if name == "urls":
                settings["urls"] = _lines(value)
            elif name == "lists":
                raw = _pairs(value, "lists")
                settings["lists"] = {k: int(v) if v.isdigit() else v for k, v in raw.items()}
            elif name == "merge_fields":
                settings["merge_fields"] = _pairs(value, "merge_fields")
            elif value:
                settings[name] = value
        events = {}
        if sources := _words(c.get("event_sources", "")):
            events = {
                "sources": [int(s) if s.isdigit() else s for s in sources],
                "names": _lines(str(c.get("event_names") or "")),
            }
        return {
            "name": c.get("name"), "kind": kind, "enabled": c.get("enabled", True),
            "audiences": "all" if c.get("all_audiences") else _words(c.get("audience_keys", "")),
            "traits": "all" if c.get("all_traits") else _words(c.get("trait_keys", "")),
            "events": events, "consent_categories": _words(c.get("consent_categories", "")), "settings": settings,
        }  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            body = self.body()
            definition_parse(body, current=definition_of(self.instance) if self.instance.pk else None)
        except forms.ValidationError as exc:
            raise exc
        except DestinationError as exc:
            self.add_error(self._field_of(exc.path), exc.message)
        return data

    def _field_of(self, path: str) -> str | None:
        if path.startswith("settings."):
            name = re.split(r"[.\[]", path[len("settings.") :])[0]
            return name if name in self.fields else None
        head = re.split(r"\[", path)[0]
        field = _FIELD_OF.get(head, head)
        return field if field in self.fields else None
