"""Does torch.compile pay for the default UNet on this CPU? Eager against compiled, side by side.

    .venv/bin/python bench/bench_compile.py [--preset default] [--repeats 3] [--calls 10] [--mode default]

Times forward + MSE loss + backward of the preset's UNet on one training-sized batch (the
optimizer and EMA are left out: they are the same for both), eager and `torch.compile(model,
mode=--mode)` sharing the same weights, in interleaved repeats of --calls calls each, after a
warm-up. The compile time (the first compiled call) is reported apart: a run pays it once per
process, so it is worth it only if (eager - compiled) x steps exceeds it. Needs a C++ compiler
(inductor's CPU backend). No assertions on speed; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from diffrep.config import make_config
from diffrep.model import build_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--mode", default="default", help="torch.compile mode (default, reduce-overhead, max-autotune)")
    args = ap.parse_args(argv)

    cfg = make_config(args.preset, [])
    torch.manual_seed(0)
    eager = build_model(cfg).train()
    b, n = cfg.training.batch_size, cfg.data.image_size
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(b, 1, n, n, generator=gen)
    noise = torch.randn(b, 1, n, n, generator=gen)
    t = torch.randint(1000, (b,), generator=gen)
    labels = torch.rand(b, 2, generator=gen) * cfg.data.latent_size

    def step(model):
        F.mse_loss(model(x_t, t, labels), noise).backward()

    t0 = time.perf_counter()
    compiled = torch.compile(eager, mode=args.mode)
    step(compiled)
    compile_s = time.perf_counter() - t0

    variants = {"eager": eager, "compiled": compiled}
    for model in variants.values():
        step(model)
    samples = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, model in variants.items():
            t0 = time.perf_counter()
            for _ in range(args.calls):
                step(model)
            samples[name].append((time.perf_counter() - t0) / args.calls)

    s = {name: statistics.median(v) for name, v in samples.items()}
    saved = s["eager"] - s["compiled"]
    print(f"{args.preset} preset, batch {b}, {torch.get_num_threads()} threads, mode {args.mode}")
    print(f"  compile (first call)   {compile_s:7.1f} s")
    for name, v in s.items():
        print(f"  {name:9s} fwd+bwd    {v * 1e3:7.1f} ms  (repeats {', '.join(f'{x * 1e3:.1f}' for x in samples[name])})")
    print(f"  speed-up {s['eager'] / s['compiled']:.3f}x; break-even after "
          + (f"{compile_s / saved:,.0f} steps" if saved > 0 else "never (not faster)"))
    result = {"preset": args.preset, "mode": args.mode, "threads": torch.get_num_threads(), "compile_s": round(compile_s, 2),
              "eager_s": round(s["eager"], 5), "compiled_s": round(s["compiled"], 5), "speedup": round(s["eager"] / s["compiled"], 4)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
