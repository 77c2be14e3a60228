"""the admin UI's spend reads: spend_logs (user_id, start_time) and spend_rollup

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 (every internal user's logs, usage and overview read their own rows: without the index
a rare user's page scans the start_time index across the whole table; key and team filters get no index
(each secondary index costs the embedded database's spend writer ~15-25 us of CPU per request);
spend_rollup (15-minute UTC buckets per model group, kept by triggers, state/rollup.py) lets the overview
and the day totals read ~3,000 rows a month per model group instead of every spend row.  What each costs
a request is in docs/ui.md, "Scale")
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lockgate.state import rollup

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = ('user_id',)


def upgrade() -> None:
    for column in COLUMNS:
        op.create_index(f'ix_spend_logs_{column}_start_time', 'spend_logs', [column, 'start_time'], unique=False)
    op.create_table(
        'spend_rollup',
        sa.Column('bucket', sa.DateTime(), nullable=False),
        sa.Column('model_group', sa.String(length=255), nullable=False),
        sa.Column('requests', sa.BigInteger(), nullable=False),
        sa.Column('errors', sa.BigInteger(), nullable=False),
        sa.Column('spend', sa.Float(), nullable=False),
        sa.Column('prompt_tokens', sa.BigInteger(), nullable=False),
        sa.Column('completion_tokens', sa.BigInteger(), nullable=False),
        sa.Column('latency_ms', sa.Float(), nullable=False),
        sa.Column('ttft_ms', sa.Float(), nullable=False),
        sa.Column('ttft_count', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('bucket', 'model_group', name=op.f('pk_spend_rollup')),
    )
    bind = op.get_bind()  # the driver's own SQL: no bind parameters parsed out of the text
    bind.exec_driver_sql(rollup.BACKFILL[bind.dialect.name])
    for sql in rollup.statements(bind.dialect.name):
        bind.exec_driver_sql(sql)


def downgrade() -> None:
    bind = op.get_bind()
    for sql in rollup.DROP[bind.dialect.name]:
        bind.exec_driver_sql(sql)
    op.drop_table('spend_rollup')
    for column in COLUMNS:
        op.drop_index(f'ix_spend_logs_{column}_start_time', table_name='spend_logs')
