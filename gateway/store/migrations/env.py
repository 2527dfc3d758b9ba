"""Alembic environment: runs on the engine the gateway hands in (``config.attributes['engine']``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gateway.store.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # plain `alembic` command line, for autogenerate during development
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///var/gateway.db")

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
