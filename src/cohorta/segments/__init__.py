"""Segments: preview and explain of draft rules now; definitions, lifecycle and member lists as they land."""
