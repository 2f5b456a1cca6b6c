"""api tokens always expire

Every API token now has an expiry. Tokens made before this revision without one are given
90 days from the upgrade (the default lifetime), so scripts keep working while their owners
replace them; then expires_at becomes NOT NULL.

Revision ID: 3f6a9c1d2b84
Revises: eec057b37184
Create Date: 2026-12-07 19:10:00.000000

"""

from datetime import UTC, datetime, timedelta

from alembic import op
import sqlalchemy as sa

import utils.money


# revision identifiers, used by Alembic.
revision = "3f6a9c1d2b84"
down_revision = "eec057b37184"
branch_labels = None
depends_on = None

GRACE = timedelta(days=90)


def upgrade() -> None:
    tokens = sa.table("api_tokens", sa.column("expires_at", utils.money.UTCDateTime(timezone=True)))
    op.execute(tokens.update().where(tokens.c.expires_at.is_(None)).values(expires_at=datetime.now(UTC) + GRACE))
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("expires_at", existing_type=utils.money.UTCDateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("expires_at", existing_type=utils.money.UTCDateTime(timezone=True), nullable=True)
