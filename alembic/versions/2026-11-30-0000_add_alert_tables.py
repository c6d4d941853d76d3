"""add alert tables

Revision ID: 5dc5281c8ab3
Revises: 5e8b2d7c4a19
Create Date: 2026-11-30 00:00:43.315231
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = '5dc5281c8ab3'
down_revision: str | None = '5e8b2d7c4a19'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alert_rule',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('vm_glob', sa.Text(), server_default='*', nullable=False),
    sa.Column('unit', sa.Text(), nullable=True),
    sa.Column('priority', sa.Text(), nullable=True),
    sa.Column('grep', sa.Text(), nullable=True),
    sa.Column('match', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('window_seconds', sa.Integer(), nullable=False),
    sa.Column('webhook_url', sa.Text(), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('start_seq', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_rule'))
    )
    op.create_index('uq_alert_rule_name', 'alert_rule', ['name'], unique=True)
    op.create_table('alert_cursor',
    sa.Column('vm_id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('event_count', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['vm_id'], ['vm.id'], name=op.f('fk_alert_cursor_vm_id_vm'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vm_id', name=op.f('pk_alert_cursor'))
    )
    op.create_table('alert_notification',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('rule_id', sa.UUID(), nullable=False),
    sa.Column('vm_id', sa.UUID(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('delivery', sa.Text(), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['alert_rule.id'], name=op.f('fk_alert_notification_rule_id_alert_rule'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vm_id'], ['vm.id'], name=op.f('fk_alert_notification_vm_id_vm'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_notification'))
    )
    op.create_index('ix_alert_notification_due', 'alert_notification', ['next_attempt_at'], unique=False, postgresql_where=sa.text("delivery = 'pending'"))
    op.create_index('ix_alert_notification_rule', 'alert_notification', ['rule_id', 'created_at'], unique=False)
    op.create_table('alert_state',
    sa.Column('rule_id', sa.UUID(), nullable=False),
    sa.Column('vm_id', sa.UUID(), nullable=False),
    sa.Column('status', sa.Text(), server_default='ok', nullable=False),
    sa.Column('recent_ts', postgresql.ARRAY(sa.DateTime(timezone=True)), server_default='{}', nullable=False),
    sa.Column('recent_seq', postgresql.ARRAY(sa.BigInteger()), server_default='{}', nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('episode_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('matches', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('firings', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['alert_rule.id'], name=op.f('fk_alert_state_rule_id_alert_rule'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vm_id'], ['vm.id'], name=op.f('fk_alert_state_vm_id_vm'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('rule_id', 'vm_id', name=op.f('pk_alert_state'))
    )
    op.create_index('ix_alert_state_firing', 'alert_state', ['last_seen_at'], unique=False, postgresql_where=sa.text("status = 'firing'"))


def downgrade() -> None:
    op.drop_index('ix_alert_state_firing', table_name='alert_state', postgresql_where=sa.text("status = 'firing'"))
    op.drop_table('alert_state')
    op.drop_index('ix_alert_notification_rule', table_name='alert_notification')
    op.drop_index('ix_alert_notification_due', table_name='alert_notification', postgresql_where=sa.text("delivery = 'pending'"))
    op.drop_table('alert_notification')
    op.drop_table('alert_cursor')
    op.drop_index('uq_alert_rule_name', table_name='alert_rule')
    op.drop_table('alert_rule')
