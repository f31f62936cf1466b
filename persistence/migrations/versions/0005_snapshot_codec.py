"""Snapshots compressed by Plait on PostgreSQL: doc_snapshots.codec and raw_bytes, data stored as it is

Rows written before keep codec NULL (their bytes are the document) until the next compaction rewrites them.
``STORAGE EXTERNAL`` keeps PostgreSQL from trying to compress lz4 output again. Why: persistence/snapshot_codec.py.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("doc_snapshots") as batch:
        batch.add_column(sa.Column("codec", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("raw_bytes", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE doc_snapshots ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    """The previous revision reads ``data`` as the document: expand the compressed rows first."""
    import lz4.block

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT workspace_id, data FROM doc_snapshots WHERE codec IS NOT NULL")).all()
    for workspace_id, data in rows:
        bind.execute(
            sa.text("UPDATE doc_snapshots SET data = :data, codec = NULL WHERE workspace_id = :w"),
            {"data": lz4.block.decompress(data), "w": workspace_id},
        )
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE doc_snapshots ALTER COLUMN data SET STORAGE EXTENDED")
    with op.batch_alter_table("doc_snapshots") as batch:
        batch.drop_column("raw_bytes")
        batch.drop_column("codec")
