"""Apiary's built-in plugins (DESIGN.md §6); each one a small package registered by entry point."""
