"""Time to probe one checkpoint: activations and every representation metric, per probe-grid size.

    .venv/bin/python bench/bench_probe.py [RUN_DIR --step S] [--grids 16,32] [--layers layer4] [--threads N]

Without RUN_DIR the default preset's model at initialization is probed (the cost does not depend
on the weights, only on the model's shape and the number of conditions); with RUN_DIR, the EMA
weights of checkpoint --step (default: the latest). For each grid size G (G x G conditions;
G = 32 is the 1,024 conditions of the probe issue) it times, in this order:

  capture   `probes.capture_activations` of --layers on one noise draw of the config's probe input
  metrics   `probes.probe_metrics` without UMAP (ridge decoding, trustworthiness, kNN overlap,
            TwoNN, Levina-Bickel, participation ratio, coding angles, decoder transfer)
  umap      `probes.umap_r2` (UMAP to 3D + the two regressions). The very first UMAP call of a
            process also compiles umap-learn's numba kernels; that call is reported on its own
            as `umap_first_call_s` (paid once per process: a training run pays it at its first
            checkpoint), and every grid is then timed warm.

total_s = capture + metrics + umap (warm), per layer set. No assertions on speed; the last line
printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import time

import numpy as np
import torch

from diffrep.config import ConfigError, make_config
from diffrep.diffusion import NoiseSchedule
from diffrep.model import build_model
from diffrep.evaluation.probes import capture_activations, probe_conditions, probe_inputs, probe_metrics, umap_r2
from diffrep.rundir import RunDir
from diffrep.training import load_model


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def time_first_umap_call(cfg) -> float:
    """Seconds of the process's first UMAP call (numba compilation) on a small input; later calls are warm."""
    p = cfg.probe
    conds, _ = probe_conditions(cfg.data, 8)
    acts = np.random.default_rng(0).normal(size=(len(conds), 32))
    return timed(umap_r2, acts, conds, p.umap_neighbors, p.umap_min_dist, p.umap_seed)[1]


def time_probe(model, cfg, layers: list[str], grid: int) -> dict:
    """Seconds of capture, metrics without UMAP and UMAP (call `time_first_umap_call` first, so that
    it is warm) on a grid x grid probe set of `layers` of `model`, with cfg's probe settings."""
    p = cfg.probe
    conds, _ = probe_conditions(cfg.data, grid)
    inputs = probe_inputs(cfg.data, conds, p.input, p.timestep, NoiseSchedule(cfg.diffusion), p.noise_seed, 1)[0]
    acts, capture_s = timed(capture_activations, model, conds, layers, inputs, p.timestep)
    metrics_s = umap_s = 0.0
    for a in acts.values():
        metrics_s += timed(probe_metrics, a, conds, dataclasses.replace(p, umap=False))[1]
        umap_s += timed(umap_r2, a, conds, p.umap_neighbors, p.umap_min_dist, p.umap_seed)[1]
    return {"grid": grid, "conditions": len(conds), "dims": {k: v.shape[1] for k, v in acts.items()},
            "capture_s": round(capture_s, 3), "metrics_s": round(metrics_s, 3), "umap_s": round(umap_s, 3),
            "total_s": round(capture_s + metrics_s + umap_s, 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", help="a run directory (default: the default preset at init)")
    ap.add_argument("--step", type=int, help="checkpoint of RUN_DIR (default: the latest)")
    ap.add_argument("--grids", default="16,32", help="probe grid sizes, comma-separated")
    ap.add_argument("--layers", default="layer4", help="hook points, comma-separated")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: leave torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.run_dir:
        run = RunDir.open(args.run_dir)
        cfg = run.config()
        step = args.step if args.step is not None else run.checkpoint_steps()[-1]
        model = load_model(run, step)
        source = f"{args.run_dir} step {step}"
    else:
        cfg = make_config("default", {})
        torch.manual_seed(cfg.training.seed)
        model = build_model(cfg).eval()
        source = "default preset at initialization"
    layers = args.layers.split(",")
    grids = [int(g) for g in args.grids.split(",")]

    umap_first_call_s = time_first_umap_call(cfg)
    rows = []
    for grid in grids:
        row = time_probe(model, cfg, layers, grid)
        rows.append(row)
        print(f"grid {grid:3d} ({row['conditions']:5d} conditions, {','.join(layers)}): capture {row['capture_s']:6.2f} s"
              f"  metrics {row['metrics_s']:6.2f} s  umap {row['umap_s']:6.2f} s  total {row['total_s']:6.2f} s", flush=True)

    result = {"date": datetime.date.today().isoformat(), "source": source, "layers": layers,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
              "umap_first_call_s": round(umap_first_call_s, 3), "grids": rows}
    print(f"first UMAP call of the process (numba compilation): {umap_first_call_s:.2f} s")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
