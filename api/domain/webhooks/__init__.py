"""Signed webhooks: the address guard, event derivation, the delivery outbox and the sender."""
