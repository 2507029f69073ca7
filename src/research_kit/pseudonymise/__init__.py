"""Pseudonymisation: keys, pseudonyms, generalisation and re-identification risk."""
