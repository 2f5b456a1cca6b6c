"""reconciliation drift alerts and connection hold

Revision ID: 41bd22063950
Revises: 4f65d5a9a8eb
Create Date: 2026-11-30 06:47:49.579147

"""

from alembic import op
import sqlalchemy as sa

import utils.money


# Frozen here: one open alert per connection, kind, symbol and broker order id.
OPEN_DRIFT = sa.text("resolved_at IS NULL")

# revision identifiers, used by Alembic.
revision = "41bd22063950"
down_revision = "4f65d5a9a8eb"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "orphan_order", "missing_order", "position_mismatch", name="driftkind", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("broker_order_id", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("our_quantity", utils.money.Money(precision=28, scale=10), nullable=True),
        sa.Column("broker_quantity", utils.money.Money(precision=28, scale=10), nullable=True),
        sa.Column("created_at", utils.money.UTCDateTime(timezone=True), nullable=False),
        sa.Column("detected_at", utils.money.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", utils.money.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["broker_connections.id"],
            name=op.f("fk_drift_alerts_connection_id_broker_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_drift_alerts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_alerts")),
    )
    with op.batch_alter_table("drift_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drift_alerts_connection_id"), ["connection_id"], unique=False)
        batch_op.create_index("ix_drift_alerts_user_resolved", ["user_id", "resolved_at"], unique=False)
        batch_op.create_index(
            "uq_drift_alerts_open",
            ["connection_id", "kind", "symbol", "broker_order_id"],
            unique=True,
            postgresql_where=OPEN_DRIFT,
            sqlite_where=OPEN_DRIFT,
        )

    with op.batch_alter_table("broker_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reconciled_at", utils.money.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reconcile_hold_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("broker_connections", schema=None) as batch_op:
        batch_op.drop_column("reconcile_hold_reason")
        batch_op.drop_column("reconciled_at")

    with op.batch_alter_table("drift_alerts", schema=None) as batch_op:
        batch_op.drop_index("uq_drift_alerts_open", postgresql_where=OPEN_DRIFT, sqlite_where=OPEN_DRIFT)
        batch_op.drop_index("ix_drift_alerts_user_resolved")
        batch_op.drop_index(batch_op.f("ix_drift_alerts_connection_id"))

    op.drop_table("drift_alerts")
