"""The audit log by target: an administrator reads what happened to one account (or invite, token, webhook)

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_log_target_seq", "audit_log", ["target_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_target_seq", table_name="audit_log")
