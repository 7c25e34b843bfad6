"""How training step time, rendering time and probe time grow with image size, dataset size and probe grid.

Full measurement (on the 2-core CPU alone; about 5-10 minutes):

    .venv/bin/python bench/bench_scale.py

Options: [--sizes 16,32,64] [--dataset-sizes 1000,10000,100000] [--grids 8,16,32] [--steps 20]
[--warmup 3] [--render-batch B] [--only train,render,probe] [--threads N]. Smoke test (< 30 s):

    .venv/bin/python bench/bench_scale.py --sizes 16 --dataset-sizes 1000 --grids 8 --steps 3 --warmup 1

The configuration at image size N is the default preset with data.image_size = data.latent_size =
data.x_max = data.y_max = N (validation wants latent_size >= image_size and the lattice inside
[0, latent_size]), so the lattice covers the frame as it does at N = 32, and
model.attention_resolutions = [N / 4], so attention stays at the third level (down3, mid, up1) as in
the default at N = 32 and only the feature maps grow. A dataset of size M is that lattice with
k = round(sqrt(M)) points per axis (dx = dy = N / (k - 1)); the M reported is k^2.

Three measurements, each configuration in a fresh subprocess (this script with --worker), whose
peak resident memory (getrusage ru_maxrss) is that configuration's `peak_rss_mb`; `start_rss_mb`
is the subprocess's after its imports (torch, diffrep), so peak - start is what the configuration
itself added:

  train   (N, M): a real `Trainer` on a temporary, never written RunDir: --warmup untimed, then
          --steps timed `train_step` calls (bench_train.time_train_steps): median s/step, images/s,
          and forward + backward GFLOP per step (bench_train.count_step_flops).
  render  (N, M): `BumpDataset` construction, then all M training images rendered by
          `BumpDataset.render` in batches of --render-batch (default: the preset's batch size,
          the path a training step takes): images/s.
  probe   (N, G): bench_probe.time_probe of the default model at initialization, layer4 (the probed
          layer of the default) on a G x G grid: capture + metrics without UMAP + UMAP. The first
          UMAP call of each subprocess compiles numba kernels; it is timed apart
          (bench_probe.time_first_umap_call, `umap_first_call_s`) and the probe's UMAP is warm.

No assertions on speed; the last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from bench_probe import time_first_umap_call, time_probe
from bench_train import count_step_flops, time_train_steps
from diffrep.config import Config, ConfigError, make_config
from diffrep.data import BumpDataset
from diffrep.model import build_model
from diffrep.rundir import RunDir
from diffrep.training import Trainer, resolve_device

KINDS = ("train", "render", "probe")


def config_at(image_size: int, dataset_size: int | None = None) -> Config:
    """The default preset at image size N (module docstring), with a lattice of about `dataset_size` points."""
    n = image_size
    overrides = {"data.image_size": n, "data.latent_size": float(n), "data.x_max": float(n), "data.y_max": float(n),
                 "model.attention_resolutions": [n // 4]}
    if dataset_size is not None:
        spacing = n / (round(math.sqrt(dataset_size)) - 1)
        overrides.update({"data.dx": spacing, "data.dy": spacing})
    return make_config("default", overrides)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------------------
# One configuration, in its own process.


def measure_train(n: int, m: int, steps: int, warmup: int) -> dict:
    cfg = config_at(n, m)
    with tempfile.TemporaryDirectory(prefix="diffrep-bench-") as tmp:
        trainer = Trainer(cfg, RunDir(tmp), resolve_device(cfg.training.device))  # never saved
        step_times, total_s = time_train_steps(trainer, steps, warmup)
        flops, _ = count_step_flops(trainer)
    return {"dataset_size": len(trainer.dataset), "step_s": round(statistics.median(step_times), 5),
            "step_s_min": round(min(step_times), 5), "step_s_max": round(max(step_times), 5),
            "images_per_s": round(cfg.training.batch_size * steps / total_s, 1), "gflop_per_step": round(flops / 1e9, 4)}


def measure_render(n: int, m: int, batch: int | None) -> dict:
    cfg = config_at(n, m)
    t0 = time.perf_counter()
    dataset = BumpDataset(cfg.data)
    build_s = time.perf_counter() - t0
    conditions = dataset.train_conditions
    batch = batch or cfg.training.batch_size
    t0 = time.perf_counter()
    for start in range(0, len(conditions), batch):
        dataset.render(conditions[start:start + batch])
    render_s = time.perf_counter() - t0
    return {"dataset_size": len(conditions), "batch": batch, "build_s": round(build_s, 4),
            "render_s": round(render_s, 4), "images_per_s": round(len(conditions) / render_s, 1)}


def measure_probe(n: int, grid: int) -> dict:
    cfg = config_at(n)
    torch.manual_seed(cfg.training.seed)
    model = build_model(cfg).eval()
    umap_first_call_s = time_first_umap_call(cfg)
    return {**time_probe(model, cfg, ["layer4"], grid), "umap_first_call_s": round(umap_first_call_s, 3)}


def worker(spec: dict) -> dict:
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    start_rss = peak_rss_mb()
    kind, n = spec["kind"], spec["image_size"]
    if kind == "train":
        result = measure_train(n, spec["dataset_size"], spec["steps"], spec["warmup"])
    elif kind == "render":
        result = measure_render(n, spec["dataset_size"], spec["render_batch"])
    else:
        result = measure_probe(n, spec["grid"])
    return {**spec, **result, "threads": torch.get_num_threads(),
            "start_rss_mb": round(start_rss, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def run_worker(spec: dict) -> dict:
    """`worker(spec)` in a fresh Python process; its last stdout line is the result."""
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{spec}: worker failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------


def describe(r: dict) -> str:
    memory = f"peak RSS {r['peak_rss_mb']:7.1f} MB (+{r['peak_rss_mb'] - r['start_rss_mb']:6.1f})"
    if r["kind"] == "train":
        return (f"train   N {r['image_size']:3d}  M {r['dataset_size']:7d}  step {r['step_s']:.4f} s "
                f"({r['step_s_min']:.4f}-{r['step_s_max']:.4f})  {r['images_per_s']:8.1f} img/s  "
                f"{r['gflop_per_step']:7.3f} GFLOP/step  {memory}")
    if r["kind"] == "render":
        return (f"render  N {r['image_size']:3d}  M {r['dataset_size']:7d}  build {r['build_s']:.3f} s  "
                f"render {r['render_s']:7.3f} s  {r['images_per_s']:10.1f} img/s (batch {r['batch']})  {memory}")
    return (f"probe   N {r['image_size']:3d}  G {r['grid']:3d}  capture {r['capture_s']:6.2f} s  metrics {r['metrics_s']:6.2f} s"
            f"  umap {r['umap_s']:6.2f} s  total {r['total_s']:6.2f} s  (first UMAP call {r['umap_first_call_s']:.1f} s)  {memory}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="16,32,64", help="image sizes N (multiples of 4, >= 16)")
    p.add_argument("--dataset-sizes", default="1000,10000,100000", help="dataset sizes M (lattice points, about)")
    p.add_argument("--grids", default="8,16,32", help="probe grid sizes G (G x G conditions)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--render-batch", type=int, default=None, help="images per render call (default: the preset's batch size)")
    p.add_argument("--only", default=",".join(KINDS), help=f"measurements to run, a subset of {','.join(KINDS)}")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in every subprocess")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one configuration, as JSON
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    try:
        sizes = [int(v) for v in args.sizes.split(",")]
        dataset_sizes = [int(v) for v in args.dataset_sizes.split(",")]
        grids = [int(v) for v in args.grids.split(",")]
        kinds = args.only.split(",")
        if (args.steps < 1 or args.warmup < 0 or min(dataset_sizes) < 4 or (args.render_batch or 1) < 1
                or not set(kinds) <= set(KINDS)):
            raise ValueError("--steps, --render-batch >= 1, --warmup >= 0, --dataset-sizes >= 4, --only from train,render,probe")
        for n in sizes:
            config_at(n, max(dataset_sizes)).with_overrides({"probe.grid": min(grids)})  # validate before any work
    except (ValueError, ConfigError) as e:
        print(f"bench_scale: {e}", file=sys.stderr)
        return 2

    base = {"threads": args.threads}
    specs = []
    for n in sizes:
        if "train" in kinds:
            specs += [{**base, "kind": "train", "image_size": n, "dataset_size": m, "steps": args.steps,
                       "warmup": args.warmup} for m in dataset_sizes]
        if "render" in kinds:
            specs += [{**base, "kind": "render", "image_size": n, "dataset_size": m, "render_batch": args.render_batch}
                      for m in dataset_sizes]
        if "probe" in kinds:
            specs += [{**base, "kind": "probe", "image_size": n, "grid": g} for g in grids]
    results = []
    for spec in specs:
        results.append(run_worker(spec))
        print(describe(results[-1]), flush=True)

    print(json.dumps({"preset": "default", "sizes": sizes, "dataset_sizes": dataset_sizes, "grids": grids,
                      "results": results, "torch": torch.__version__, "python": platform.python_version(),
                      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
