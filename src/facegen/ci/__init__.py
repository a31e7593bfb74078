"""Continuous-integration helpers (the metric gate)."""
