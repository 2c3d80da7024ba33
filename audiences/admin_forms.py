"""The audience form of the admin: the rule is edited by the builder widget (no JSON typed),
and validated as saving would validate it, with the error placed beside the node it names."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django import forms

from audiences.catalog import audience_catalog, event_catalog, trait_catalog
from audiences.models import Audience
from audiences.services import audience_check
from profiles.query.filters import QueryError


class RuleBuilder(forms.Widget):
    """The builder (`audiences/static/audiences/builder.js`) over a hidden textarea holding
    the rule's JSON. `urls` are the admin's preview, property and query endpoints; `key` the
    audience being edited (for the preview's cycle check); `readonly` shows without editing."""

    template_name = "admin/audiences/widgets/rule_builder.html"

    class Media:
        css = {"all": ["audiences/builder.css"]}
        js = ["audiences/builder.js"]

    def __init__(
        self, *, urls: dict[str, str], key: str = "", readonly: bool = False, include_anonymous: bool = False
    ) -> None:
        super().__init__()
        self.urls, self.key, self.readonly, self.include_anonymous = urls, key, readonly, include_anonymous
        self.error: tuple[str, str] | None = None

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"].update(
            urls=self.urls, key=self.key, readonly=self.readonly, include_anonymous=self.include_anonymous,
            error=self.error, catalog_id=f"{context['widget']['attrs'].get('id') or name}-catalog",
            catalog=builder_catalog(exclude=self.key or None),
        )  # fmt: skip
        return context


def builder_catalog(*, exclude: str | None) -> dict[str, Any]:
    """What the builder offers: events with volumes, traits with types, other audiences."""
    return {
        "events": event_catalog(),
        "traits": [asdict(t) for t in trait_catalog()],
        "audiences": audience_catalog(exclude=exclude),
    }


class AudienceForm(forms.ModelForm[Audience]):
    class Meta:
        model = Audience
        fields = ["name", "key", "description", "rule", "include_anonymous", "enabled", "schedule_minutes"]
        help_texts = {
            "key": "snake_case, e.g. dormant_openers; it never changes once saved (destinations and the API use it).",
            "include_anonymous": "Off: a member needs a user_id, an email or an advertising id. Fixed once saved.",
            "rule": "",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "rule" in self.changed_data and data.get("rule") is not None:
            saved = self.instance.pk is not None
            try:
                audience_check(
                    rule=data["rule"],
                    include_anonymous=self.instance.include_anonymous if saved else bool(data.get("include_anonymous")),
                    key=self.instance.key if saved else (data.get("key") or None),
                )
            except QueryError as exc:
                widget = self.fields["rule"].widget
                if isinstance(widget, RuleBuilder):
                    widget.error = (exc.path, exc.message)
                self.add_error("rule", f"{_where(exc.path)}{exc.message}")
        return data


def _where(path: str) -> str:
    """A node's path as people read it ("$.all[1].where[0]" is the marked condition)."""
    return "" if path in ("rule", "$") else "In the marked condition: "
