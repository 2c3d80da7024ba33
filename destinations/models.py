"""Destinations (floor 1): the outbox and its adapters. Built by a later issue."""
