"""spend_daily: closed local days of spend_logs per timezone and key, team, user or tag, for the admin UI's
usage page (materialised off the request path by ui/data/daily.py; docs/ui.md, "Scale")

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'spend_daily',
        sa.Column('tz', sa.String(length=64), nullable=False),
        sa.Column('dimension', sa.String(length=8), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('requests', sa.BigInteger(), nullable=False),
        sa.Column('errors', sa.BigInteger(), nullable=False),
        sa.Column('spend', sa.Float(), nullable=False),
        sa.Column('prompt_tokens', sa.BigInteger(), nullable=False),
        sa.Column('completion_tokens', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('tz', 'dimension', 'day', 'value', name=op.f('pk_spend_daily')),
    )


def downgrade() -> None:
    op.drop_table('spend_daily')
