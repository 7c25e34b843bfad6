"""What evaluating every checkpoint costs: a preset's run trained with and without it, side by side.

    .venv/bin/python bench/bench_eval_cost.py [--preset default] [--rounds 2] [--threads 2] [--set key=value ...]

Each round times three `diffrep train` processes of the same config, one after the other, each into
a fresh temporary run directory (wall-clock time of the whole process, start-up included):

  bare   scoring.during_training = false, probe.during_training = false: training, checkpoints and
         metrics only
  dense  the preset as it is (every checkpoint scored and probed), without the final DDPM scoring
         (scoring.final_ddpm = false)
  final  the preset as it is: the same, plus the finished run's last checkpoint scored with DDPM over
         all T steps

and the ratios dense / bare and final / bare of that round, so that a shared machine's drift between
rounds falls out of each ratio. The reported ratios are the medians over the rounds. --set applies
to all three. No assertions on speed; the last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from diffrep.config import ConfigError, make_config

VARIANTS = {
    "bare": ["scoring.during_training=false", "probe.during_training=false"],
    "dense": ["scoring.final_ddpm=false"],
    "final": [],
}


def time_run(preset: str, overrides: list[str], threads: int) -> float:
    """Seconds of one `diffrep train` process of the preset with overrides, in a new run directory."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "diffrep", "train", preset, "--quiet", "--run-dir", f"{tmp}/run"]
        for item in overrides:
            args += ["--set", item]
        start = time.perf_counter()
        subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of each run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = make_config(args.preset, args.overrides)  # bad settings: one line, before any run
        if args.rounds < 1 or args.threads < 1:
            raise ConfigError(f"--rounds, --threads: must be >= 1 (got {args.rounds}, {args.threads})")
    except ConfigError as e:
        print(f"bench_eval_cost: error: {e}", file=sys.stderr)
        return 2
    t = cfg.training
    print(f"{args.preset}: {t.steps} steps, a checkpoint every {t.checkpoint_every} (+{t.checkpoint_log_points} "
          f"log-spaced), {args.threads} threads, {args.rounds} rounds", flush=True)
    rounds = []
    for r in range(args.rounds):
        seconds = {name: time_run(args.preset, args.overrides + extra, args.threads) for name, extra in VARIANTS.items()}
        seconds["dense_ratio"] = seconds["dense"] / seconds["bare"]
        seconds["final_ratio"] = seconds["final"] / seconds["bare"]
        rounds.append(seconds)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.2f}" + ("" if k.endswith("ratio") else " s")
                                             for k, v in seconds.items()), flush=True)
    result = {
        "bench": "eval_cost", "preset": args.preset, "overrides": args.overrides, "steps": t.steps,
        "checkpoint_every": t.checkpoint_every, "threads": args.threads, "rounds": rounds,
        "dense_ratio": statistics.median(r["dense_ratio"] for r in rounds),
        "final_ratio": statistics.median(r["final_ratio"] for r in rounds),
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "date": datetime.date.today().isoformat(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
