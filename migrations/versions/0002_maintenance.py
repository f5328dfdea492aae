"""Partition maintenance in the database (placeholder, filled by the maintenance work).

Revision ID: 0002_maintenance
Revises: 0001_schema
Create Date: 2026-11-26
"""

from __future__ import annotations

revision = "0002_maintenance"
down_revision = "0001_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
