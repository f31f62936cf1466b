"""E-mail (docs/accounts.md): an outbox sent over SMTP, password reset links, invites and notification digests."""
