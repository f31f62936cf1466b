"""Signed webhooks: ``ssrf`` (the address guard), ``events`` (event derivation, the typing merge), ``outbox``
(derive and store deliveries), ``sender`` (send, retry, disable) and ``service`` (the two wired together)."""
