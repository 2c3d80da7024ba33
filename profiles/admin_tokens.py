"""Admin for API access tokens: create (the token is shown once) and revoke. Registered from
`ProfilesConfig.ready` so that it lives beside, not inside, the profile pages' admin module."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from profiles.models import AccessToken
from profiles.services.tokens import access_token_create, access_token_revoke


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin[AccessToken]):
    list_display = ("name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    fields = ("name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "created_by", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: AccessToken | None = None) -> Any:
        # A token's name is fixed once it exists, like the token.
        return (*self.readonly_fields, "name") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: AccessToken, form: ModelForm[AccessToken], change: bool) -> None:
        if change:
            return
        token, raw = access_token_create(name=obj.name, actor=request.user)
        obj.pk, obj.token_hash, obj.prefix = token.pk, token.token_hash, token.prefix
        messages.warning(
            request, f"The access token for {token.name!r} is {raw} — copy it now: it will not be shown again."
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> None:
        count = sum(access_token_revoke(token_id=token.id, actor=request.user) for token in queryset)
        self.message_user(request, f"{count} token(s) revoked.")
