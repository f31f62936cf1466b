"""Plait sync_server package."""
