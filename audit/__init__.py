"""The staff audit log (floor 0, below every other app): who changed what, when and why."""
