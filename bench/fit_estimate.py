"""Fit the sweep time estimate (diffrep.experiments.catalog.run_seconds) to runs measured on this machine.

    .venv/bin/python bench/fit_estimate.py runs/*-laptop [--concurrent 2]

A run's measured time is the sum of its training sessions (provenance.json: each session's start to
its end, checkpoints scored and probed inside it), so a run stopped and resumed later counts the
time it trained and not the pause; unfinished runs are skipped. A sweep trains
--concurrent runs at once (two one-thread runs on a 2-core CPU), so each run's share of the
sweep's wall time is its time divided by that. The three constants of `run_seconds` (seconds per training step, per checkpoint, and the
fixed part of a run's cost) are fitted by least squares of the relative errors
(scipy.optimize.least_squares), and each sweep's measured total is printed beside the estimate
with the current constants and the fitted ones. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from diffrep.config import Config
from diffrep.experiments.catalog import CHECKPOINT_SECONDS, FIXED_COST, STEP_SECONDS, run_seconds
from diffrep.rundir import RunDir
from diffrep.training import is_finished


def measured_runs(sweep_dir: Path) -> list[tuple[Config, float]]:
    """(config, seconds its training sessions took) of every finished run of a sweep: an unfinished
    one (killed, or still training) did not take the time the estimate is for. A run without a
    provenance.json, or with a session killed before it recorded its end (SIGKILL), is left out:
    the time it trained is unknown."""
    runs = []
    for path in sorted((sweep_dir / "runs").iterdir()):
        run = RunDir(path)
        if not run.config_path.is_file() or not is_finished(cfg := run.config(), run):
            continue
        sessions = run.provenance().get("sessions")
        if sessions and all(s["ended"] for s in sessions):
            runs.append((cfg, sum((datetime.fromisoformat(s["ended"]) - datetime.fromisoformat(s["started"])).total_seconds()
                                  for s in sessions)))
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dirs", nargs="+", type=Path)
    p.add_argument("--concurrent", type=int, default=2, help="runs the sweeps trained at once")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.sweep_dirs if not (d / "runs").is_dir()]
    if missing:
        print(f"fit_estimate: sweep_dirs: not a sweep directory (no runs/): {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.concurrent < 1:
        print(f"fit_estimate: --concurrent: must be an integer >= 1 (got {args.concurrent})", file=sys.stderr)
        return 2

    sweeps = {str(d): measured_runs(d) for d in args.sweep_dirs}
    if not any(sweeps.values()):
        print("fit_estimate: sweep_dirs: no finished run in them to fit to", file=sys.stderr)
        return 2
    configs = [cfg for runs in sweeps.values() for cfg, _ in runs]
    measured = np.array([s for runs in sweeps.values() for _, s in runs]) / args.concurrent

    def estimates(constants) -> np.ndarray:
        return np.array([run_seconds(cfg, *constants) for cfg in configs])

    current = (STEP_SECONDS, CHECKPOINT_SECONDS, FIXED_COST)
    fit = least_squares(lambda c: estimates(c) / measured - 1, current, bounds=([0, 0, 0], [np.inf, np.inf, 1])).x
    by_current, by_fit = estimates(current), estimates(fit)

    print(f"{'sweep':<28} {'runs':>4} {'measured min':>12} {'current':>8} {'fitted':>8}")
    start = 0
    for name, runs in sweeps.items():
        part = slice(start, start + len(runs))
        start += len(runs)
        print(f"{name:<28} {len(runs):>4} {measured[part].sum() / 60:>12.1f} {by_current[part].sum() / 60:>8.1f} "
              f"{by_fit[part].sum() / 60:>8.1f}")
    error = {"current": float(np.mean(np.abs(by_current / measured - 1))), "fitted": float(np.mean(np.abs(by_fit / measured - 1)))}
    print(f"constants: current step {current[0]:.4f} s, checkpoint {current[1]:.3f} s, fixed {current[2]:.3f}; "
          f"fitted {fit[0]:.4f} s, {fit[1]:.3f} s, {fit[2]:.3f}")
    print(f"mean error per run: current {error['current']:.1%}, fitted {error['fitted']:.1%} ({len(configs)} runs)")
    print(json.dumps({"runs": len(configs), "concurrent": args.concurrent,
                      "current": dict(zip(("step_s", "checkpoint_s", "fixed_cost"), current)),
                      "fitted": dict(zip(("step_s", "checkpoint_s", "fixed_cost"), (round(float(v), 4) for v in fit))),
                      "mean_relative_error": error}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
