"""spend_window: the last 6 and 29 closed local days of spend_daily summed per key, for the admin UI's usage
by key over the 7- and 30-day ranges that end today (built off the request path by ui/data/windows.py;
docs/ui.md, "Scale")

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'spend_window',
        sa.Column('tz', sa.String(length=64), nullable=False),
        sa.Column('days', sa.Integer(), nullable=False),
        sa.Column('last_day', sa.String(length=10), nullable=False),
        sa.Column('dimension', sa.String(length=8), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('requests', sa.BigInteger(), nullable=False),
        sa.Column('spend', sa.Float(), nullable=False),
        sa.Column('prompt_tokens', sa.BigInteger(), nullable=False),
        sa.Column('completion_tokens', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('tz', 'days', 'last_day', 'dimension', 'value', name=op.f('pk_spend_window')),
    )
    op.create_index('ix_spend_window_rank', 'spend_window',
                    ['tz', 'days', 'last_day', 'dimension', 'spend', 'value'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_spend_window_rank', table_name='spend_window')
    op.drop_table('spend_window')
