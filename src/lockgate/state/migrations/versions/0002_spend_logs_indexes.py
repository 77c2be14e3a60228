"""spend_logs keeps only its start_time index

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 (every request inserts one spend_logs row: each secondary index cost ~1 us per
request on the embedded database; /spend/logs and /global/spend/report filter by time, as LiteLLM's
SpendLogs table is indexed)
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

DROPPED = ('api_key', 'model_group', 'team_id', 'user_id')


def upgrade() -> None:
    with op.batch_alter_table('spend_logs', schema=None) as batch_op:
        for column in DROPPED:
            batch_op.drop_index(batch_op.f(f'ix_spend_logs_{column}'))


def downgrade() -> None:
    with op.batch_alter_table('spend_logs', schema=None) as batch_op:
        for column in DROPPED:
            batch_op.create_index(batch_op.f(f'ix_spend_logs_{column}'), [column], unique=False)
