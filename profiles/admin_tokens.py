"""Admin for API access tokens: create (the token is shown once, on the page that answers the
form, never in a message or a cookie) and revoke (asking why). Registered from
`ProfilesConfig.ready` so that it lives beside, not inside, the profile pages' admin module."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from audit.admin import REASON, AuditedModelAdmin, reason_confirmation
from profiles.models import AccessToken
from profiles.services.tokens import access_token_create, access_token_revoke


@admin.register(AccessToken)
class AccessTokenAdmin(AuditedModelAdmin[AccessToken]):
    list_display = ("name", "prefix", "can_write", "created_at", "created_by", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    fields = ("name", "can_write", "prefix", "created_at", "created_by", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "created_by", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: AccessToken | None = None) -> Any:
        # A token's name is fixed once it exists, like the token.
        return (*self.readonly_fields, "name", "can_write") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: AccessToken, form: ModelForm[AccessToken], change: bool) -> None:
        """Only creation saves (a token never changes); the service audits it."""
        if change:
            return
        token, raw = access_token_create(
            name=obj.name, actor=request.user, reason=form.cleaned_data.get(REASON, ""), can_write=obj.can_write
        )
        obj.pk, obj.token_hash, obj.prefix = token.pk, token.token_hash, token.prefix
        request._cdp_new_token = raw  # type: ignore[attr-defined]  # for response_add, this request only

    def response_add(
        self, request: HttpRequest, obj: AccessToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The answer to the add form is the page that shows the token, once: it is not kept
        anywhere (messages would put it in a cookie), and no cache may keep the page."""
        context = {
            **self.admin_site.each_context(request),
            "title": f"Access token {obj.name!r} created",
            "token": obj,
            "raw": getattr(request, "_cdp_new_token", ""),
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/profiles/accesstoken/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> HttpResponse | None:
        def act(reason: str) -> str:
            count = sum(access_token_revoke(token_id=token.id, actor=request.user, reason=reason) for token in queryset)
            return f"{count} token(s) revoked."

        return reason_confirmation(self, request, queryset, title="Revoke these access tokens", act=act)
