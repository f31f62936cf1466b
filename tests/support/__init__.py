"""Shared test helpers: real databases, real servers, real clients."""
