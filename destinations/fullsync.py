"""Full syncs: a destination that starts taking an audience first gets its current members.

Destinations know nothing of audiences, so the layer that does registers a provider at
startup (`members_provider_register`, from `AudiencesConfig.ready`): it lists the subjects
and pages through their members as messages, in a transaction of the caller's, holding
whatever lock keeps the page consistent with the deltas enqueued around it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from django.db import transaction
from django.utils import timezone

from destinations.models import Destination, FullSync
from destinations.outbox import Outgoing, deliveries_enqueue

logger = logging.getLogger(__name__)

# Members per transaction: one page read and its deliveries written (about 50 ms at 500
# members with one email each on the CI machine).
PAGE = 500


@dataclass(frozen=True, slots=True)
class MembersPage:
    messages: Sequence[Outgoing]
    cursor: str | None  # None: the last page
    total: int  # members in all, for the progress figure


class MembersProvider(Protocol):
    def subjects(self) -> list[str]: ...

    def page(self, *, subject: str, cursor: str, limit: int, id_prefix: str) -> MembersPage | None:
        """Messages for the members after `cursor` (None: no such subject). Message ids
        start with `id_prefix`, so a page sent twice is owed once."""
        ...


_provider: MembersProvider | None = None


def members_provider_register(provider: MembersProvider) -> None:
    global _provider
    _provider = provider


def provider() -> MembersProvider | None:
    return _provider


def subjects_new(before: list[str] | str, after: list[str] | str) -> list[str]:
    """The audience keys a subscription change adds ("all": every audience there is)."""
    if after == "all":
        every = _provider.subjects() if _provider else []
        return [] if before == "all" else [k for k in every if k not in set(before)]
    return sorted(set(after) - (set() if before == "all" else set(before))) if before != "all" else []


def syncs_start(*, destination: Destination, subjects: Sequence[str]) -> list[FullSync]:
    """Record a sync per subject (in the caller's transaction); they run after the commit."""
    made = [FullSync.objects.create(destination=destination, subject=s) for s in subjects]
    if made:
        ids = [s.pk for s in made]
        transaction.on_commit(lambda: _enqueue(ids))
    return made


def _enqueue(ids: list[int]) -> None:
    from destinations.tasks import full_sync

    for sync_id in ids:
        try:
            full_sync.delay(sync_id)
        except Exception:  # the broker: the sweep restarts running syncs
            logger.warning("Broker unavailable: full sync %s starts with the next sweep.", sync_id)


def full_sync_run(*, sync_id: int, max_pages: int | None = None) -> FullSync | None:
    """Send the subject's members page by page, each page in one transaction with its
    progress. Resumes from its cursor; done syncs and missing providers are left alone."""
    sync = FullSync.objects.filter(pk=sync_id, status=FullSync.Status.RUNNING).first()
    if sync is None:
        return None
    if _provider is None:
        FullSync.objects.filter(pk=sync.pk).update(status=FullSync.Status.FAILED, error="no members provider")
        return sync
    pages = 0
    while max_pages is None or pages < max_pages:
        with transaction.atomic():
            sync = FullSync.objects.select_for_update().get(pk=sync_id)
            if sync.status != FullSync.Status.RUNNING:
                return sync
            page = _provider.page(subject=sync.subject, cursor=sync.cursor, limit=PAGE, id_prefix=f"sync-{sync.pk}-")
            if page is None:
                sync.status, sync.error, sync.finished_at = FullSync.Status.FAILED, "no such audience", timezone.now()
                sync.save(update_fields=["status", "error", "finished_at"])
                return sync
            deliveries_enqueue(messages=page.messages, only=[sync.destination_id])
            sync.done += len({m.person for m in page.messages})
            sync.total = max(page.total, sync.done)
            sync.cursor = page.cursor or sync.cursor
            sync.touched_at = timezone.now()
            if page.cursor is None:
                sync.status, sync.finished_at = FullSync.Status.DONE, timezone.now()
            sync.save(update_fields=["done", "total", "cursor", "status", "finished_at", "touched_at"])
        pages += 1
        if sync.status != FullSync.Status.RUNNING:
            return sync
    return sync
