"""The papers' experiments as named sweeps (catalog.py), one analysis per experiment, and the
statistics their verdicts are computed with (stats.py)."""

from .catalog import EXPERIMENTS, SCALES, analyze_sweep, estimate_seconds, plan, recompute_findings, run_experiment

__all__ = ["EXPERIMENTS", "SCALES", "analyze_sweep", "estimate_seconds", "plan", "recompute_findings", "run_experiment"]
