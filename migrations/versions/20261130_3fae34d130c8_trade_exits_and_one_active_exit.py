"""trade exits and one active exit

Revision ID: 3fae34d130c8
Revises: 15cb8127f432
Create Date: 2026-11-30 06:13:50.044171

"""

from alembic import op
import sqlalchemy as sa

import utils.money


# Frozen here: later changes to the enums must not rewrite what this revision created.
ACTIVE_EXIT = sa.text(
    "purpose IN ('exit', 'stop_loss', 'take_profit') "
    "AND status IN ('cancel_pending', 'partially_filled', 'pending_submit', 'submitted', 'unknown', 'working')"
)

# revision identifiers, used by Alembic.
revision = "3fae34d130c8"
down_revision = "15cb8127f432"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "uq_orders_one_active_exit",
            ["trade_id"],
            unique=True,
            postgresql_where=ACTIVE_EXIT,
            sqlite_where=ACTIVE_EXIT,
        )

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fees", utils.money.Money(precision=28, scale=10), nullable=False, server_default="0")
        )

    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trail_anchor", utils.money.Money(precision=28, scale=10), nullable=True))
        batch_op.add_column(sa.Column("protection_detail", sa.String(length=500), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("breached_at", utils.money.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "exit_filled_quantity", utils.money.Money(precision=28, scale=10), nullable=False, server_default="0"
            )
        )
        batch_op.add_column(sa.Column("exit_average_price", utils.money.Money(precision=28, scale=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_column("exit_average_price")
        batch_op.drop_column("exit_filled_quantity")
        batch_op.drop_column("breached_at")
        batch_op.drop_column("protection_detail")
        batch_op.drop_column("trail_anchor")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("fees")
        batch_op.drop_index(
            "uq_orders_one_active_exit",
            postgresql_where=ACTIVE_EXIT,
            sqlite_where=ACTIVE_EXIT,
        )
