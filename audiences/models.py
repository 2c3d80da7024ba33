"""Audiences (floor 3): rule trees, membership and history. Built by a later issue."""
