"""equity snapshots

Revision ID: 5b0e3c9d2a71
Revises: 32ff10ac4cfc
Create Date: 2026-11-30 08:40:00.000000

"""

from alembic import op
import sqlalchemy as sa

import utils.money


# revision identifiers, used by Alembic.
revision = "5b0e3c9d2a71"
down_revision = "32ff10ac4cfc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "equity_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("taken_at", utils.money.UTCDateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("cash", utils.money.Money(precision=28, scale=10), nullable=False),
        sa.Column("buying_power", utils.money.Money(precision=28, scale=10), nullable=False),
        sa.Column("equity", utils.money.Money(precision=28, scale=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["broker_connections.id"],
            name=op.f("fk_equity_snapshots_connection_id_broker_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_equity_snapshots_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_snapshots")),
    )
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_equity_snapshots_connection_id"), ["connection_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_equity_snapshots_taken_at"), ["taken_at"], unique=False)
        batch_op.create_index("ix_equity_snapshots_user_taken", ["user_id", "taken_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_equity_snapshots_user_taken")
        batch_op.drop_index(batch_op.f("ix_equity_snapshots_taken_at"))
        batch_op.drop_index(batch_op.f("ix_equity_snapshots_connection_id"))

    op.drop_table("equity_snapshots")
