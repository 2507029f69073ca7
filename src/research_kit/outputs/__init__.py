"""Outputs: declaring them from notebooks, automatic gates, SDC checks, review and release."""
