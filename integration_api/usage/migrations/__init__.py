"""Alembic migrations of the usage log's PostgreSQL schema (``env.py``, ``versions/``); run by
``integration_api.usage.migrate`` at start-up, or with ``alembic -x url=postgresql://... upgrade head``
(with ``script_location`` pointing here)."""
