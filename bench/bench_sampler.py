"""How far is the fast sampler from DDPM-1000, and how much cheaper is it?

On the same checkpoints and the same evaluation conditions, sample with DDPM (all T steps) and
with DDIM at several step counts, score every image, and print per checkpoint the accuracy and
the outcome fractions of each sampler, their largest gap to DDPM in percentage points, the
binomial standard error of a fraction at this sample size (gaps below ~2 standard errors are
noise), and images per second.

    .venv/bin/python bench/bench_sampler.py RUN_DIR [--checkpoints 500,1000,2000] [--ddim 10,25,50] [--grid 12]

The last line is JSON with every number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time

import torch

from diffrep.rundir import RunDir
from diffrep.evaluation.scoring import evaluation_set, score_model
from diffrep.training import load_model

KEYS = ("accuracy", "frac_several", "frac_wrong", "frac_none", "frac_accurate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--checkpoints", help="steps (default: three checkpoints spread over the run)")
    parser.add_argument("--ddim", default="10,25,50", help="DDIM step counts (default 10,25,50)")
    parser.add_argument("--eta", default="0,1", help="DDIM eta values (default 0,1)")
    parser.add_argument("--grid", type=int, default=12, help="evaluation grid per axis (default 12: 144 conditions)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    run = RunDir.open(args.run_dir)
    base = run.config().with_overrides({"scoring.grid": args.grid, "scoring.seed": args.seed, "data.holdout": []})
    all_steps = [s for s in run.checkpoint_steps() if s > 0]
    if args.checkpoints:
        steps = [run.resolve_step(s) for s in args.checkpoints.split(",")]
    else:
        steps = sorted({all_steps[len(all_steps) // 3], all_steps[2 * len(all_steps) // 3], all_steps[-1]})
    samplers = [("ddpm", base.diffusion.timesteps, 0.0)]
    samplers += [("ddim", int(k), float(eta)) for eta in args.eta.split(",") for k in args.ddim.split(",")]
    evalset = evaluation_set(base)
    n = len(evalset.conditions)

    results = []
    print(f"{'step':>7} {'sampler':>12} {'acc':>6} {'several':>8} {'wrong':>6} {'none':>6} {'img/s':>7} {'gap pts':>8}")
    for step in steps:
        model = load_model(run, step)
        reference = None
        for name, k, eta in samplers:
            cfg = base.with_overrides({"scoring.sampler": name, "scoring.sampler_steps": k, "scoring.eta": eta})
            start = time.perf_counter()
            summary, _, _ = score_model(model, cfg, evalset)
            seconds = time.perf_counter() - start
            stats = summary["groups"]["train"]
            reference = reference or stats
            gap = max(abs(stats[key] - reference[key]) for key in KEYS) * 100
            row = {"step": step, "sampler": summary["sampler"], **{k: stats[k] for k in KEYS},
                   "images_per_s": n / seconds, "max_gap_points": gap}
            results.append(row)
            print(f"{step:>7} {row['sampler']:>12} {stats['accuracy']:>6.3f} {stats['frac_several']:>8.3f} "
                  f"{stats['frac_wrong']:>6.3f} {stats['frac_none']:>6.3f} {row['images_per_s']:>7.1f} {gap:>8.1f}",
                  flush=True)
    # The largest standard error of a fraction measured on n images (at p = 1/2).
    print(f"conditions per checkpoint: {n}; standard error of a fraction <= {50 / math.sqrt(n):.1f} points")
    print(json.dumps({"run": str(run.path), "conditions": n, "threads": torch.get_num_threads(),
                      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "results": results}))


if __name__ == "__main__":
    main()
