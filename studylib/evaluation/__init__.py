"""Metrics, scoring one patient, statistics, and the claims tested against the paper."""
