"""The profiles domain: people with per-platform handles."""
