"""notification webhooks

Revision ID: 673218a8b1bf
Revises: 41bd22063950
Create Date: 2026-11-30 07:35:33.780528

"""

from alembic import op
import sqlalchemy as sa

import utils.money


# revision identifiers, used by Alembic.
revision = "673218a8b1bf"
down_revision = "41bd22063950"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_sent_at", utils.money.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("webhook_attempts", sa.Integer(), nullable=False, server_default="0"))

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("webhook_secret_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("webhook_since", utils.money.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("webhook_since")
        batch_op.drop_column("webhook_secret_encrypted")
        batch_op.drop_column("webhook_url")

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("webhook_attempts")
        batch_op.drop_column("webhook_sent_at")
