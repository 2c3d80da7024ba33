"""Identity resolution. `rules`, `extract` and `planner` are pure (no ORM, no clock);
`profiles.services.resolution` loads, locks and applies."""
