"""The domain of the API node without HTTP: derived data (notifications, activity, webhooks, versions) and the
membership rules. No module here imports FastAPI or Starlette (tests/unit/test_domain_imports.py checks), so
the rules can be called from routes, workers and tests alike."""
