"""Computed traits and scores: definitions (pure), their compiler to SQL (pure), the values
they hold per profile, and the services that keep them current (in real time from the
change feed, on a schedule as time passes, and in full on demand)."""
