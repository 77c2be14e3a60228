"""keys.allowed_cache_controls (LiteLLM's key field: which per-request cache controls a key may use)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allowed_cache_controls', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('keys', schema=None) as batch_op:
        batch_op.drop_column('allowed_cache_controls')
