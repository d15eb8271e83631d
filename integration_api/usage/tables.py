"""The PostgreSQL schema of the usage log, as SQLAlchemy Core tables: what the store queries and what the Alembic
migrations (``migrations/versions``) build. A change here needs a new migration (``alembic revision``).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("stream_id", sa.Text, nullable=False),
    sa.Column("organization_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("key_id", sa.Text),
    sa.Column("user_id", sa.Text),
    sa.Column("auth_method", sa.Text, nullable=False),
    sa.Column("rpc", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("code", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("total_ms", sa.Float, nullable=False),
    sa.Column("retries", sa.Integer, nullable=False),
    sa.Column("prompt", sa.Text),
    sa.Column("reply", sa.Text),
    sa.Index("usage_records_by_time", "time"),
    sa.Index("usage_records_by_project", "organization_id", "project_id", "time"),
)
