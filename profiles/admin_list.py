"""The profile list at scale: a paginator that never counts a million rows, and list filters
that PostgreSQL answers from indexes."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Page, Paginator
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from profiles.counting import queryset_count_estimate
from profiles.models import Identity, Profile

# Up to this many rows a count is exact: counting 10,000 index entries costs ~2 ms, and below
# it PostgreSQL's estimate is too rough to show (a search that finds 3 people must say 3).
EXACT_COUNT_UP_TO = 10_000


class EstimatedCountPaginator(Paginator):
    """The admin changelist's paginator. It reads the first page (plus one row) before
    counting: when that is everything, it is the count, and a search that finds a handful of
    people runs its query once. Otherwise it counts with `queryset_count_estimate`, so past
    10,000 rows the page count is an estimate and the last pages may come up short."""

    @cached_property
    def _first_rows(self) -> list[Any]:
        return list(self.object_list[: self.per_page + 1])

    @cached_property
    def count(self) -> int:
        if len(self._first_rows) <= self.per_page:
            return len(self._first_rows)
        count, _ = queryset_count_estimate(self.object_list, exact_up_to=EXACT_COUNT_UP_TO)  # type: ignore[arg-type]
        return max(count, len(self._first_rows))

    def first_page_rows(self) -> list[Any]:
        return self._first_rows[: self.per_page]

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        if number == 1:
            return Page(self._first_rows[: self.per_page], number, self)
        return super().page(number)


class ProfileChangeList(ChangeList):
    """When everything fits on one page, Django's changelist queries the list again for its
    rows; the paginator already holds them (for a search, that query is the search)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if not self.multi_page and isinstance(self.paginator, EstimatedCountPaginator):
            self.result_list = self.paginator.first_page_rows()


class LastSeenFilter(admin.SimpleListFilter):
    """Served by the `profile_last_seen` index."""

    title = "last seen"
    parameter_name = "seen"
    WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
               "90d": timedelta(days=90)}  # fmt: skip

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days"), ("90d", "Last 90 days"),
                ("over90d", "Over 90 days ago"), ("never", "Never")]  # fmt: skip

    def queryset(self, request: HttpRequest, queryset: QuerySet[Profile]) -> QuerySet[Profile]:
        value = self.value()
        if value in self.WINDOWS:
            return queryset.filter(last_seen_at__gte=timezone.now() - self.WINDOWS[value])
        if value == "over90d":
            return queryset.filter(last_seen_at__lt=timezone.now() - self.WINDOWS["90d"])
        if value == "never":
            return queryset.filter(last_seen_at__isnull=True)
        return queryset


class HasEmailFilter(admin.SimpleListFilter):
    """An email identifier: a semi-join on the (profile, kind) index, so with the list's
    last-seen order PostgreSQL stops after one page."""

    title = "has email"
    parameter_name = "email"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Profile]) -> QuerySet[Profile]:
        has_email = Exists(Identity.objects.filter(profile_id=OuterRef("pk"), kind="email"))
        if self.value() == "yes":
            return queryset.filter(has_email)
        if self.value() == "no":
            return queryset.filter(~has_email)
        return queryset
