"""Shared machinery of every domain: config, db, cache, pagination, errors, health, server."""
