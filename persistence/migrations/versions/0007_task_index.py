"""task_index (search and due dates, with the database's own full-text index), task_index_state, scheduler_leases

SQLite: an FTS5 table over task_index(title, body) with external content, kept by triggers in the same
transaction as the row. PostgreSQL: a generated ``tsvector`` column (title weighted A, body B; the 'simple'
configuration, no stemming, like FTS5's unicode61) with a GIN index. The rows are derived from the workspace
documents: a workspace without a task_index_state row is built on first use (or by ``plait reindex``).

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE task_index_fts USING fts5(title, body, content='task_index', content_rowid='seq',"
    " tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER task_index_fts_ai AFTER INSERT ON task_index BEGIN"
    " INSERT INTO task_index_fts(rowid, title, body) VALUES (new.seq, new.title, new.body); END",
    "CREATE TRIGGER task_index_fts_ad AFTER DELETE ON task_index BEGIN"
    " INSERT INTO task_index_fts(task_index_fts, rowid, title, body) VALUES ('delete', old.seq, old.title, old.body);"
    " END",
    "CREATE TRIGGER task_index_fts_au AFTER UPDATE OF title, body ON task_index BEGIN"
    " INSERT INTO task_index_fts(task_index_fts, rowid, title, body) VALUES ('delete', old.seq, old.title, old.body);"
    " INSERT INTO task_index_fts(rowid, title, body) VALUES (new.seq, new.title, new.body); END",
]
POSTGRES_FTS = [
    "ALTER TABLE task_index ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('simple'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(body, '')), 'B')) STORED",
    "CREATE INDEX ix_task_index_search_vector ON task_index USING gin (search_vector)",
]


def upgrade() -> None:
    op.create_table(
        "task_index",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("assignee_id", sa.String(length=64), nullable=True),
        sa.Column("due_date", sa.String(length=10), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("rank", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.String(length=40), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("doc_seq", sa.BigInteger(), nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_task_index_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_task_index")),
        sa.UniqueConstraint("workspace_id", "task_id", name="uq_task_index_workspace_task"),
    )
    with op.batch_alter_table("task_index", schema=None) as batch_op:
        batch_op.create_index("ix_task_index_due_date", ["due_date"], unique=False)
    op.create_table(
        "task_index_state",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("doc_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_task_index_state_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_task_index_state")),
    )
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_leases")),
    )
    for statement in SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_FTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("task_index_fts_au", "task_index_fts_ad", "task_index_fts_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS task_index_fts")
    op.drop_table("scheduler_leases")
    op.drop_table("task_index_state")
    with op.batch_alter_table("task_index", schema=None) as batch_op:
        batch_op.drop_index("ix_task_index_due_date")
    op.drop_table("task_index")
