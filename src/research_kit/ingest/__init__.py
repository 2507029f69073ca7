"""Ingest: reading raw exports, validating every row, quarantine and reconciliation."""
