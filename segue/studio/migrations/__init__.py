"""Alembic migrations of the Studio's database (`sql_store.upgrade` runs them to head)."""
