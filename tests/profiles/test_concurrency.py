"""Workers resolving overlapping identifiers at the same time, as separate processes on
PostgreSQL: one profile per person, never two, and no deadlock."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction

from ingest.models import Source
from profiles.models import Event, Identity, Profile
from profiles.services.events import EventIn, batch_store

ROOT = Path(__file__).resolve().parents[2]
PEOPLE, DEVICES, WORKERS = 40, 3, 4
T0 = datetime(2026, 11, 1, tzinfo=UTC)

WORKER = """
import sys, time, django
django.setup()
from django.utils import timezone
from ingest.pipeline import events_process
from profiles.services.resolution import batches_resolve
ids = [int(x) for x in sys.argv[2].split(",")]
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
if sys.argv[3] == "pipeline":  # with the backlog claim: workers race for the same batches
    for start in range(0, len(ids), 5):
        print(events_process(batch_ids=ids[start : start + 5]).processed)
else:
    print(batches_resolve(batch_ids=ids, processed_at=timezone.now()).processed)
"""


def event(source_id: int, n: int, type_: str, user_id=None, anonymous_id=None, context=None) -> EventIn:
    return EventIn(
        source_id=source_id, message_id=f"m{n}", type=type_, event="Clicked" if type_ == "track" else None,
        name=None, user_id=user_id, anonymous_id=anonymous_id, group_id=None, previous_id=None,
        timestamp=T0 + timedelta(seconds=n), original_timestamp=None, sent_at=None, received_at=T0,
        properties={}, traits={}, context=context or {}, integrations={}, extra=None,
    )  # fmt: skip


def population(source_id: int) -> tuple[list[EventIn], dict[str, int]]:
    """Each person browses on several devices, signs in on each, and opens an email."""
    events, owner, n = [], {}, 0
    for person in range(PEOPLE):
        for device in range(DEVICES):
            anon = f"a{person}-{device}"
            owner[anon] = person
            for type_, uid in (("page", None), ("identify", f"u{person}"), ("page", None)):
                n += 1
                events.append(event(source_id, n, type_, uid, anon))
        n += 1
        events.append(event(source_id, n, "track", None, f"a{person}-0",
                            {"traits": {"email": f"p{person}@x.io"}}))  # fmt: skip
    return events, owner


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("seed", "mode"), [(1, "resolve"), (2, "resolve"), (3, "pipeline"), (4, "pipeline")])
def test_concurrent_workers_make_one_profile_per_person(seed, mode):
    source = Source.objects.create(name=f"s{seed}")
    events, owner = population(source.pk)
    random.Random(seed).shuffle(events)
    with transaction.atomic():  # as many requests would: a batch of three messages each
        ids = [batch_store(events=events[i : i + 3]) for i in range(0, len(events), 3)]
    batches = [ids[i::WORKERS] for i in range(WORKERS)]

    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "cdp.settings"}
    start = time.time() + 3.0  # let every process import Django before they race
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(start), ",".join(map(str, b)), mode], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for b in batches
    ]  # fmt: skip
    processed = 0
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        processed += sum(int(line) for line in out.split())
    assert processed == len(events), "each event is processed exactly once, by whichever worker claimed it"

    assert not Event.objects.filter(profile__isnull=True).exists()
    live = Profile.objects.filter(merged_into__isnull=True, identities__isnull=False).distinct()
    assert live.count() == PEOPLE
    for person in range(PEOPLE):
        profiles = set(
            Event.objects.filter(anonymous_id__startswith=f"a{person}-").values_list("profile_id", flat=True)
        )
        assert len(profiles) == 1, f"person {person} is split across {profiles}"
        held = set(Identity.objects.filter(profile_id=profiles.pop()).values_list("kind", "value"))
        assert held == {("user_id", f"u{person}"), ("email", f"p{person}@x.io")} | {
            ("anonymous_id", f"a{person}-{d}") for d in range(DEVICES)
        }
    assert len(owner) == PEOPLE * DEVICES
