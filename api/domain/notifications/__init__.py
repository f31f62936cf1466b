"""Notifications and activity derived from committed document changes: ``derive`` (pure), ``store``
(membership and preference filtering, inserts), ``views`` (JSON), ``hub`` (live wake-ups for SSE streams) and
``worker`` (the queue that records them in log order)."""
