"""Plait api package."""
