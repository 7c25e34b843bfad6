"""The `paper` preset on the densest dataset, on a GPU: training images/s and the time to phase C.

The GPU part of the performance issue as one prepared command. Defaults: the `paper` preset (widths
64/128/256, attention at 16 and 8, the default recipe with lr 1e-3) on the densest lattice of the density
experiment's full scale, dx = dy = 0.1 (103,041 bump centres), on `training.device` (auto: the GPU
where there is one). Two measurements, one after the other in this process:

1. throughput (bench_train.py's `measure`): --steps timed `Trainer.train_step` calls after --warmup
   untimed ones: images/s, median s/step, the forward + backward FLOPs (FlopCounterMode) and their
   rate as a fraction of the fp32 matmul rate (the faster of torch.mm and a 1 x 1 convolution, TF32
   off for both, n = --matmul-size, before and after).
   torch's own defaults are kept: on CUDA, convolutions may use TF32 (cudnn.allow_tf32) while
   float32 matmuls do not; both settings are printed.
2. time to target (bench_time_to_c.py's `race`, for diffrep alone): a fresh run trained and
   evaluated (scored and probed, as `diffrep train` does) on the config's checkpoint schedule until
   accuracy >= --target-accuracy in phase C or --budget-s training seconds. Reported for phase C, the
   accuracy, and both: the step, the training seconds (the sum of `train_step` calls) and the wall
   seconds (training plus every evaluation before it), or "not within the budget".

The last line printed is one JSON object with every number; --out DIR also writes it to
DIR/gpu.json (a new or empty directory), with the run's metrics.jsonl and config.json beside it.
No assertions on speed.

On a lent GPU machine (no network there: carry what it lacks). Its Python has torch, numpy,
scipy, scikit-learn, matplotlib, safetensors and tqdm, not umap-learn; fetch the wheels here once
(`.device-wheels/` is ignored by git):

    .venv/bin/pip download --no-deps -d .device-wheels umap-learn pynndescent

then run, with carry [".device-wheels"] and a timeout that leaves time for the evaluations
(about 30 checkpoints at the default budget):

    python3 -m pip install -q --no-deps --no-index .device-wheels/*.whl && \
    PYTHONPATH=src:bench PYTHONUNBUFFERED=1 python3 bench/bench_gpu.py --budget-s 240 --out $OUT

A CPU smoke test (seconds):

    .venv/bin/python bench/bench_gpu.py --preset tiny --set data.dx=2 --set data.dy=2 --budget-s 3 --steps 3 --matmul-size 256
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from bench_time_to_c import at_target, race
from bench_train import measure
from diffrep.config import ConfigError, make_config
from diffrep.rundir import RunDir
from diffrep.training import Trainer, resolve_device

DENSEST = ["data.dx=0.1", "data.dy=0.1"]  # the density experiment's densest lattice at the full scale


def time_to(result: dict, accuracy: float, need_phase: bool) -> dict:
    """The first evaluation of the race that meets a target: step, training s, wall s (training plus
    the evaluations up to and including that one); `reached` False if none did."""
    hit = at_target(result, accuracy, need_phase)
    if not hit["reached"]:
        return {"reached": False}
    evaluations = sum(p["eval_s"] for p in result["curve"] if p["step"] <= hit["step"])
    return {"reached": True, "step": hit["step"], "train_s": hit["train_s"], "wall_s": round(hit["train_s"] + evaluations, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"config override after the densest lattice ({' '.join(DENSEST)}), repeatable")
    p.add_argument("--budget-s", type=float, default=240.0, help="training seconds of the race (evaluation not counted)")
    p.add_argument("--target-accuracy", type=float, default=0.9)
    p.add_argument("--steps", type=int, default=50, help="timed steps of the throughput measurement")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--matmul-size", type=int, default=None, help="n of the fp32 matmul (default 8192 on CUDA, 2048 on a CPU)")
    p.add_argument("--out", type=Path, default=None, help="also write gpu.json, metrics.jsonl and config.json here")
    args = p.parse_args(argv)
    if args.budget_s <= 0 or args.steps < 1 or args.warmup < 0 or (args.matmul_size or 1) < 1:
        p.error("--budget-s must be > 0, --steps and --matmul-size >= 1, --warmup >= 0")
    if args.out and args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        p.error(f"--out: {args.out} exists and is not an empty directory; choose another")
    try:
        cfg = make_config(args.preset, DENSEST + args.overrides)
        device = resolve_device(cfg.training.device)
    except ConfigError as e:
        print(f"bench_gpu: {e}", file=sys.stderr)
        return 2
    matmul_size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    record = {"preset": args.preset, "overrides": DENSEST + args.overrides, "device": device.type,
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
              "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
              "float32_matmul_precision": torch.get_float32_matmul_precision()}
    print(f"bench_gpu: {args.preset} {' '.join(record['overrides'])} on {record['device_name']} ({device.type})", flush=True)

    record["throughput"] = t = measure(cfg, device, args.steps, args.warmup, matmul_size, matmul_repeats=3)
    print(f"throughput: {t['images_per_s']:,.1f} images/s ({t['step_s'] * 1e3:.2f} ms per step of {t['batch_size']}), "
          f"{t['flops_per_step'] / 1e9:.1f} GFLOP per step, {t['train_gflops']:,.0f} GFLOP/s = {t['fraction_of_matmul']:.2f} "
          f"of fp32 matmul ({t['matmul_gflops']:,.0f} GFLOP/s at n = {matmul_size})", flush=True)

    with tempfile.TemporaryDirectory(prefix="diffrep-bench-") as tmp:
        run = RunDir.create(Path(tmp) / "run", cfg)
        result = race("diffrep", Trainer(cfg, run, device), args.budget_s, args.target_accuracy, need_phase=True)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "config.json"):
                shutil.copy(run.path / name, args.out / name)
    targets = {"phase C": (0.0, True), f"accuracy >= {args.target_accuracy}": (args.target_accuracy, False),
               f"accuracy >= {args.target_accuracy} and phase C": (args.target_accuracy, True)}
    record["time_to"] = {name: time_to(result, *target) for name, target in targets.items()}
    record["race"] = result
    print(f"\nrace: {result['steps_trained']:,} steps in {result['train_clock_s']:.1f} training s (budget {args.budget_s:g}), "
          f"best accuracy {result['best_accuracy']:.3f} at step {result['best_accuracy_step']:,}")
    for name, hit in record["time_to"].items():
        print(f"  {name:<32} " + (f"step {hit['step']:>7,}  training {hit['train_s']:8.1f} s  wall {hit['wall_s']:8.1f} s"
                                   if hit["reached"] else "not within the budget"))
    record.update({"budget_s": args.budget_s, "target_accuracy": args.target_accuracy, "torch": torch.__version__,
                   "python": platform.python_version(),
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    line = json.dumps(record)
    if args.out:
        (args.out / "gpu.json").write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
