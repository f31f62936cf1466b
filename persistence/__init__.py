"""Plait persistence package."""
