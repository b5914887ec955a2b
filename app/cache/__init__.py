"""Caches: cached JSON reads live in utils; response tiers and stats here."""
