"""Stored segment membership: diffs applied atomically with their history, and recomputes of whole segments."""
