"""The whole beat schedule, in one place. Every job here is safe to run twice."""

from datetime import timedelta

SCHEDULE = {
    # The change feed's consumers are woken by each commit; this catches a wake lost to a
    # broker outage or a crash, and prunes the changes every consumer has passed.
    "profiles-feed-sweep": {
        "task": "profiles.feed_sweep",
        "schedule": timedelta(seconds=10),
    },
    # Time-dependent computed traits (windows, decaying scores) whose schedule has come
    # (each trait says how often: hourly by default) are recomputed.
    "profiles-compute-traits-due": {
        "task": "profiles.compute_traits_due",
        "schedule": timedelta(minutes=5),
    },
    # Audiences that time alone can change (windows, funnels, relative dates) are
    # recomputed on their own schedule (every 15 minutes by default).
    "audiences-compute-due": {
        "task": "audiences.compute_due",
        "schedule": timedelta(minutes=1),
    },
    # Recorded changes of computed trait values are kept CDP_TRAIT_CHANGES_KEEP_DAYS.
    "profiles-prune-trait-changes": {
        "task": "profiles.prune_trait_changes",
        "schedule": timedelta(hours=24),
    },
    # SQL traits whose schedule has come (each says how often: every 12 hours by default;
    # checked every 5 minutes, so a run starts within 5 minutes of its time, as Segment's may
    # start any time within its hour), runs whose task was lost, and runs whose worker died.
    "sqltraits-enqueue-due": {
        "task": "sqltraits.enqueue_due",
        "schedule": timedelta(minutes=5),
    },
    # Events whose pipeline task was lost (a worker crash, a broker restart) are handed to
    # the pipeline again. Two minutes of grace keeps it clear of tasks still in flight.
    "ingest-sweep-unprocessed": {
        "task": "ingest.sweep_unprocessed",
        "schedule": timedelta(minutes=1),
    },
    # The ingest debugger keeps only the newest rejected messages per source, and hourly
    # counters for 30 days, so it can never fill the disk.
    "ingest-trim-debugger": {
        "task": "ingest.trim_debugger",
        "schedule": timedelta(minutes=10),
    },
    # Destinations with deliveries due and no drain running: retries whose backoff has passed
    # (the first comes within seconds), and wakes lost to a broker outage; full syncs whose
    # task was lost. One indexed look-up per destination.
    "destinations-sweep": {
        "task": "destinations.sweep",
        "schedule": timedelta(seconds=5),
    },
    # Finished deliveries past CDP_DESTINATION_KEEP_DAYS (30) are deleted; counts per day stay.
    "destinations-prune": {
        "task": "destinations.prune",
        "schedule": timedelta(hours=24),
    },
}
