"""ui_sessions.master_key_check: a master-key session is bound to the master key it was opened with
(docs/ui.md); sessions opened with the master key before this revision have none and are refused.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ui_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('master_key_check', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ui_sessions', schema=None) as batch_op:
        batch_op.drop_column('master_key_check')
