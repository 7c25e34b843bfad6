"""Evaluation of checkpoints: what a network draws (detect, scoring), what it represents (probes),
its phase (phases), and a run's checkpoints evaluated while it trains and afterwards (evaluate)."""
