"""SQL traits (floor 5, above ingest): traits from a query on a database, sent to the CDP as
identify calls through ingest's `messages_ingest`, like any other source (docs/architecture.md)."""
