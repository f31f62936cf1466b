"""Notifications and activity derived from committed document changes."""
