"""monitor slots and beat alerts

Revision ID: b7d41c2e9f05
Revises: 8c2f4e1a9b37
Create Date: 2026-11-30 09:30:00.000000

"""

from alembic import op
import sqlalchemy as sa

import utils.money


# revision identifiers, used by Alembic.
revision = "b7d41c2e9f05"
down_revision = "8c2f4e1a9b37"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("part", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_unique_constraint(batch_op.f("uq_monitor_runs_cycle_key_part"), ["cycle_key", "part"])
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alerted_at", utils.money.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.drop_column("alerted_at")
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_monitor_runs_cycle_key_part"), type_="unique")
        batch_op.drop_column("part")
