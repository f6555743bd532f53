"""Utilities shared by ``depth/`` and ``data/`` (they import neither)."""
