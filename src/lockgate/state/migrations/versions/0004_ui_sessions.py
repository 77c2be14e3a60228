"""admin UI: sessions, local users' credentials, and the key list's index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 (ui_sessions: server-side sessions shared by every instance; ui_credentials:
argon2id password hashes and TOTP secrets; keys(created_at, token_hash) and keys(blocked, created_at, token_hash):
the UI's newest-first key list, all or blocked / active only, reads one index range at 100k keys)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ui_sessions',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('role', sa.String(length=32), nullable=False),
        sa.Column('via', sa.String(length=16), nullable=False),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ui_sessions')),
    )
    op.create_index(op.f('ix_ui_sessions_user_id'), 'ui_sessions', ['user_id'], unique=False)
    op.create_index(op.f('ix_ui_sessions_expires_at'), 'ui_sessions', ['expires_at'], unique=False)
    op.create_table(
        'ui_credentials',
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('password_hash', sa.Text(), nullable=True),
        sa.Column('totp_secret', sa.String(length=64), nullable=True),
        sa.Column('totp_enabled', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('totp_last', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_ui_credentials')),
    )
    op.create_index('ix_keys_created_at_token_hash', 'keys', ['created_at', 'token_hash'], unique=False)
    op.create_index('ix_keys_blocked_created_at', 'keys', ['blocked', 'created_at', 'token_hash'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_keys_blocked_created_at', table_name='keys')
    op.drop_index('ix_keys_created_at_token_hash', table_name='keys')
    op.drop_table('ui_credentials')
    op.drop_index(op.f('ix_ui_sessions_expires_at'), table_name='ui_sessions')
    op.drop_index(op.f('ix_ui_sessions_user_id'), table_name='ui_sessions')
    op.drop_table('ui_sessions')
