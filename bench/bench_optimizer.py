"""The per-step cost of the parameter updates: AdamW implementations and the EMA, side by side.

    .venv/bin/python bench/bench_optimizer.py [--preset default] [--repeats 3] [--calls 50]

On the preset's UNet (its parameters, with random gradients), times one `optimizer.step()` of
torch.optim.AdamW in its three implementations (the default per-tensor loop on the CPU,
foreach=True, fused=True) and one EMA update written as a per-tensor `lerp_` loop against one
`torch._foreach_lerp_` over all tensors (what `diffrep.training.EMA` does). Each variant is
timed over --calls back-to-back calls, --repeats times, interleaved; the medians in ms per call
are printed with their ratio to the slowest variant. Compare with a whole training step
(bench_train.py, ~85 ms for the default preset on 2 cores). No assertions on speed; the last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from diffrep.config import make_config
from diffrep.model import build_model


def ms_per_call(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e3


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args(argv)

    model = build_model(make_config(args.preset, []))
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    ema = [p.detach().clone() for p in params]

    def ema_loop():
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.lerp_(p, 0.005)

    def ema_foreach():
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 0.005)

    variants = {f"adamw_{name}": torch.optim.AdamW(params, lr=1e-3, **kw).step
                for name, kw in (("loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True}))}
    variants.update(ema_loop=ema_loop, ema_foreach=ema_foreach)
    for fn in variants.values():  # warm-up: allocates the optimizers' moments
        fn()
    samples = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            samples[name].append(ms_per_call(fn, args.calls))

    medians = {name: statistics.median(s) for name, s in samples.items()}
    print(f"{args.preset} preset: {len(params)} parameter tensors, {sum(p.numel() for p in params):,} values, "
          f"{torch.get_num_threads()} threads")
    for group in ("adamw", "ema"):
        names = [n for n in medians if n.startswith(group)]
        slowest = max(medians[n] for n in names)
        for n in names:
            print(f"  {n:15s} {medians[n]:7.3f} ms per call   {slowest / medians[n]:5.2f}x")
    result = {"preset": args.preset, "tensors": len(params), "threads": torch.get_num_threads(),
              "ms_per_call": {k: round(v, 4) for k, v in medians.items()}}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
