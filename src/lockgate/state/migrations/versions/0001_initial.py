"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 (all tables: organizations, teams, team_members, users, keys, key_model_spend, customers, spend_logs, audit_logs, proxy_budget)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_logs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('changed_by', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('table_name', sa.String(length=64), nullable=False),
    sa.Column('object_id', sa.String(length=255), nullable=False),
    sa.Column('before_value', sa.JSON(), nullable=True),
    sa.Column('updated_values', sa.JSON(), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_logs'))
    )
    with op.batch_alter_table('audit_logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_logs_changed_by'), ['changed_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_logs_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_audit_logs_table_object', ['table_name', 'object_id'], unique=False)

    op.create_table('customers',
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('alias', sa.String(length=255), nullable=True),
    sa.Column('max_budget', sa.Float(), nullable=True),
    sa.Column('budget_duration', sa.String(length=16), nullable=True),
    sa.Column('budget_reset_at', sa.DateTime(), nullable=True),
    sa.Column('spend', sa.Float(), server_default='0', nullable=False),
    sa.Column('tpm_limit', sa.Integer(), nullable=True),
    sa.Column('rpm_limit', sa.Integer(), nullable=True),
    sa.Column('max_parallel_requests', sa.Integer(), nullable=True),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('blocked', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_customers'))
    )
    op.create_table('key_model_spend',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=255), nullable=False),
    sa.Column('spend', sa.Float(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('token_hash', 'model', name=op.f('pk_key_model_spend'))
    )
    op.create_table('keys',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('key_name', sa.String(length=32), nullable=False),
    sa.Column('key_alias', sa.String(length=255), nullable=True),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('team_id', sa.String(length=255), nullable=True),
    sa.Column('organization_id', sa.String(length=255), nullable=True),
    sa.Column('model_max_budget', sa.JSON(), nullable=False),
    sa.Column('model_rpm_limit', sa.JSON(), nullable=False),
    sa.Column('model_tpm_limit', sa.JSON(), nullable=False),
    sa.Column('allowed_routes', sa.JSON(), nullable=False),
    sa.Column('allowed_ips', sa.JSON(), nullable=False),
    sa.Column('expires', sa.DateTime(), nullable=True),
    sa.Column('max_budget', sa.Float(), nullable=True),
    sa.Column('budget_duration', sa.String(length=16), nullable=True),
    sa.Column('budget_reset_at', sa.DateTime(), nullable=True),
    sa.Column('spend', sa.Float(), server_default='0', nullable=False),
    sa.Column('tpm_limit', sa.Integer(), nullable=True),
    sa.Column('rpm_limit', sa.Integer(), nullable=True),
    sa.Column('max_parallel_requests', sa.Integer(), nullable=True),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('blocked', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_keys'))
    )
    with op.batch_alter_table('keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_keys_key_alias'), ['key_alias'], unique=False)
        batch_op.create_index(batch_op.f('ix_keys_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_keys_team_id'), ['team_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_keys_user_id'), ['user_id'], unique=False)

    op.create_table('organizations',
    sa.Column('organization_id', sa.String(length=255), nullable=False),
    sa.Column('organization_alias', sa.String(length=255), nullable=True),
    sa.Column('max_budget', sa.Float(), nullable=True),
    sa.Column('budget_duration', sa.String(length=16), nullable=True),
    sa.Column('budget_reset_at', sa.DateTime(), nullable=True),
    sa.Column('spend', sa.Float(), server_default='0', nullable=False),
    sa.Column('tpm_limit', sa.Integer(), nullable=True),
    sa.Column('rpm_limit', sa.Integer(), nullable=True),
    sa.Column('max_parallel_requests', sa.Integer(), nullable=True),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('blocked', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('organization_id', name=op.f('pk_organizations'))
    )
    op.create_table('proxy_budget',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('max_budget', sa.Float(), nullable=True),
    sa.Column('budget_duration', sa.String(length=16), nullable=True),
    sa.Column('budget_reset_at', sa.DateTime(), nullable=True),
    sa.Column('spend', sa.Float(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proxy_budget'))
    )
    op.create_table('spend_logs',
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('api_key', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('team_id', sa.String(length=255), nullable=True),
    sa.Column('organization_id', sa.String(length=255), nullable=True),
    sa.Column('end_user', sa.String(length=255), nullable=True),
    sa.Column('model_group', sa.String(length=255), nullable=False),
    sa.Column('model', sa.String(length=255), nullable=True),
    sa.Column('deployment_id', sa.String(length=255), nullable=True),
    sa.Column('provider', sa.String(length=64), nullable=True),
    sa.Column('route', sa.String(length=64), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('cached_tokens', sa.Integer(), nullable=False),
    sa.Column('spend', sa.Float(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('start_time', sa.DateTime(), nullable=False),
    sa.Column('end_time', sa.DateTime(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_spend_logs'))
    )
    with op.batch_alter_table('spend_logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spend_logs_api_key'), ['api_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_spend_logs_model_group'), ['model_group'], unique=False)
        batch_op.create_index(batch_op.f('ix_spend_logs_start_time'), ['start_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_spend_logs_team_id'), ['team_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_spend_logs_user_id'), ['user_id'], unique=False)

    op.create_table('team_members',
    sa.Column('team_id', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('team_id', 'user_id', name=op.f('pk_team_members'))
    )
    with op.batch_alter_table('team_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_members_user_id'), ['user_id'], unique=False)

    op.create_table('teams',
    sa.Column('team_id', sa.String(length=255), nullable=False),
    sa.Column('team_alias', sa.String(length=255), nullable=True),
    sa.Column('organization_id', sa.String(length=255), nullable=True),
    sa.Column('max_budget', sa.Float(), nullable=True),
    sa.Column('budget_duration', sa.String(length=16), nullable=True),
    sa.Column('budget_reset_at', sa.DateTime(), nullable=True),
    sa.Column('spend', sa.Float(), server_default='0', nullable=False),
    sa.Column('tpm_limit', sa.Integer(), nullable=True),
    sa.Column('rpm_limit', sa.Integer(), nullable=True),
    sa.Column('max_parallel_requests', sa.Integer(), nullable=True),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('blocked', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('team_id', name=op.f('pk_teams'))
    )
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_teams_organization_id'), ['organization_id'], unique=False)

    op.create_table('users',
    sa.Column('user_id', sa.String(length=255), nullable=False),
    sa.Column('user_email', sa.String(length=255), nullable=True),
    sa.Column('user_alias', sa.String(length=255), nullable=True),
    sa.Column('user_role', sa.String(length=32), nullable=True),
    sa.Column('organization_id', sa.String(length=255), nullable=True),
    sa.Column('max_budget', sa.Float(), nullable=True),
    sa.Column('budget_duration', sa.String(length=16), nullable=True),
    sa.Column('budget_reset_at', sa.DateTime(), nullable=True),
    sa.Column('spend', sa.Float(), server_default='0', nullable=False),
    sa.Column('tpm_limit', sa.Integer(), nullable=True),
    sa.Column('rpm_limit', sa.Integer(), nullable=True),
    sa.Column('max_parallel_requests', sa.Integer(), nullable=True),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('blocked', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_users'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_organization_id'), ['organization_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_organization_id'))

    op.drop_table('users')
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_teams_organization_id'))

    op.drop_table('teams')
    with op.batch_alter_table('team_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_members_user_id'))

    op.drop_table('team_members')
    with op.batch_alter_table('spend_logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spend_logs_user_id'))
        batch_op.drop_index(batch_op.f('ix_spend_logs_team_id'))
        batch_op.drop_index(batch_op.f('ix_spend_logs_start_time'))
        batch_op.drop_index(batch_op.f('ix_spend_logs_model_group'))
        batch_op.drop_index(batch_op.f('ix_spend_logs_api_key'))

    op.drop_table('spend_logs')
    op.drop_table('proxy_budget')
    op.drop_table('organizations')
    with op.batch_alter_table('keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_keys_user_id'))
        batch_op.drop_index(batch_op.f('ix_keys_team_id'))
        batch_op.drop_index(batch_op.f('ix_keys_organization_id'))
        batch_op.drop_index(batch_op.f('ix_keys_key_alias'))

    op.drop_table('keys')
    op.drop_table('key_model_spend')
    op.drop_table('customers')
    with op.batch_alter_table('audit_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_logs_table_object')
        batch_op.drop_index(batch_op.f('ix_audit_logs_created_at'))
        batch_op.drop_index(batch_op.f('ix_audit_logs_changed_by'))

    op.drop_table('audit_logs')
