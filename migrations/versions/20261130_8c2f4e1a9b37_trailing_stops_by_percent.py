"""trailing stops by percent

Revision ID: 8c2f4e1a9b37
Revises: 5b0e3c9d2a71
Create Date: 2026-11-30 09:00:00.000000

"""

from alembic import op
import sqlalchemy as sa

import utils.money


# revision identifiers, used by Alembic.
revision = "8c2f4e1a9b37"
down_revision = "5b0e3c9d2a71"
branch_labels = None
depends_on = None

# (table, amount column, percent column): a trail is by amount or by percent, never both.
TRAILS = (
    ("orders", "trail_offset", "trail_percent"),
    ("paper_orders", "trail_offset", "trail_percent"),
    ("trades", "trailing_stop_offset", "trailing_stop_percent"),
)


def upgrade() -> None:
    for table, amount, percent in TRAILS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(percent, utils.money.Money(precision=28, scale=10), nullable=True))
            batch_op.create_check_constraint(
                op.f(f"ck_{table}_one_trail_unit"), sa.text(f"{amount} IS NULL OR {percent} IS NULL")
            )


def downgrade() -> None:
    for table, _amount, percent in TRAILS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_one_trail_unit"), type_="check")
            batch_op.drop_column(percent)
