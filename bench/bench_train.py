"""Training throughput of a preset next to the machine's fp32 matmul rate, in one run.

    .venv/bin/python bench/bench_train.py [--preset default] [--steps 20] [--rounds 3] [--runs 1] [--set key=value ...]

Three measurements, all on the training device and with the same torch thread count:

1. matmul: the product of two square float32 matrices (--matmul-size, default 2048), 2 n^3 flops,
   the median over --matmul-repeats timed repeats after a warm-up, through both of torch's
   libraries for it: torch.mm (BLAS) and a 1 x 1 convolution (oneDNN / cuDNN). The faster library
   over the whole run is `matmul_kernel`: the fraction must not look better because one of them is
   slow on this CPU.
2. training: a real `diffrep.training.Trainer` (its RunDir points at a temporary directory that
   is never written to) runs --warmup untimed steps, then blocks of --steps timed calls of
   `Trainer.train_step` (data rendering, noising, forward, backward, grad clip, AdamW, EMA).
   images/s = batch_size * steps / the block's seconds; step_s = median seconds per step.
3. FLOPs: `torch.utils.flop_counter.FlopCounterMode` around one forward + loss + backward of the
   model on a batch of the preset's batch size. It counts matmuls, convolutions and attention
   (the CPU flash-attention kernel, which torch does not map, is added below with torch's own
   SDPA formulas); norms, activations, the optimizer and the EMA are not counted. The achieved
   rate is flops_per_step / step_s (step_s is the whole step).

The run alternates them: --rounds rounds of (matmul, one training block), then matmul once more.
A round's `fraction_of_matmul` divides its training rate by the mean of the matmul rates measured
just before and just after its block, so that the drift of a shared machine's speed (other
tenants of a VM: 103 and 170 GFLOP/s before and after one 20-step run) falls out of the ratio; the
reported rates and fraction are medians over the rounds, `fraction_by_round` lists them all.

With --runs K (CPU only) each block trains K runs side by side, each in its own process with
threads // K torch threads, as `diffrep sweep` does with its local backend (K workers of
cores // K threads); the processes warm up first and wait for each other, and the parent measures
the matmul, with all the threads, while they wait. A block's images/s and training GFLOP/s are then
the sums over the K runs (each run's flops_per_step over its own median step), step_s the median
over all their steps: the fraction is the machine's training rate in a sweep against its matmul rate.

No assertions on speed; the last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import threading
import time

import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from diffrep.config import Config, ConfigError, make_config
from diffrep.rundir import RunDir
from diffrep.training import Trainer, resolve_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------
# 1. matmul


MATMUL_KERNELS = ("mm", "conv1x1")


def matmul_gflops_samples(n: int, repeats: int, device: torch.device, kernel: str = "mm",
                          min_repeat_s: float = 0.1) -> list[float]:
    """GFLOP/s of `repeats` timed repeats of an n x n by n x n float32 product, after a warm-up.

    kernel "mm" is torch.mm, which goes to the BLAS torch links (MKL in the x86 CPU wheels, cuBLAS on
    CUDA); "conv1x1" is the same product as a 1 x 1 convolution of a channels-last image of n
    pixels and n channels, which goes to the library the model's convolutions use (oneDNN on a CPU,
    cuDNN on CUDA, with TF32 off). Which is faster depends on the CPU: on the AMD EPYC of 2026-12-03
    the convolution, by 1.27-1.48x in four of five runs (docs/archive/benchmarks-2026-12-03.md).
    A repeat runs `inner` back-to-back calls, `inner` chosen from the warm-up so that one repeat
    lasts at least `min_repeat_s` (1 on a 2-core CPU at n = 2048; many on a GPU).
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=torch.float32).to(device)
    b = torch.randn(n, n, generator=gen, dtype=torch.float32).to(device)
    if kernel == "mm":
        out = torch.empty(n, n, dtype=torch.float32, device=device)

        def product() -> None:
            torch.mm(a, b, out=out)
    else:
        image = a.reshape(1, n, n, 1).contiguous(memory_format=torch.channels_last)  # [pixels, channels] in memory
        weight = b.reshape(n, n, 1, 1)

        def product() -> None:
            F.conv2d(image, weight)

    flops = 2 * n**3
    allow_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # an fp32 rate: cuDNN runs convolutions in TF32 by default
    try:
        warm = []
        for _ in range(3):
            sync(device)
            t0 = time.perf_counter()
            product()
            sync(device)
            warm.append(time.perf_counter() - t0)
        inner = max(1, int(min_repeat_s / max(min(warm), 1e-9)))
        samples = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                product()
            sync(device)
            samples.append(flops * inner / (time.perf_counter() - t0) / 1e9)
    finally:
        torch.backends.cudnn.allow_tf32 = allow_tf32
    return samples


# ----------------------------------------------------------------------------
# 2. training steps


def time_train_steps(trainer: Trainer, steps: int, warmup: int) -> tuple[list[float], float]:
    """(seconds of each of `steps` timed `Trainer.train_step` calls, their total wall time),
    after `warmup` untimed steps."""
    for _ in range(warmup):
        trainer.train_step()
    step_times = []
    sync(trainer.device)
    total0 = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()  # ends in loss.item(), which waits for the device
        sync(trainer.device)
        step_times.append(time.perf_counter() - t0)
    return step_times, time.perf_counter() - total0


def _side_by_side_run(config_dict: dict, threads: int, warmup: int, steps: int, go, stop, results) -> None:
    """One of side_by_side_runs' processes: warm up, say so at the barrier `go`, then time a
    block of `steps` steps each time `go` opens again, until `stop` is set. A failure (or a
    parent gone for 10 minutes) breaks the barrier, so that no process waits for one that will not come."""
    try:
        torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory(prefix="diffrep-bench-") as tmp:
            trainer = Trainer(Config.from_dict(config_dict), RunDir(tmp), torch.device("cpu"))
            for _ in range(warmup):
                trainer.train_step()
            go.wait(timeout=600)  # warmed up
            while True:
                go.wait(timeout=600)
                if stop.is_set():
                    return
                results.put(time_train_steps(trainer, steps, 0))
    except BaseException as e:
        go.abort()
        results.put(f"{type(e).__name__}: {e}")


@contextlib.contextmanager
def side_by_side_runs(cfg, runs: int, threads: int, warmup: int, steps: int):
    """`runs` CPU runs of `cfg`, each in a process of its own with `threads` torch threads, warmed
    up and idle; yields a function that times one block of `steps` steps in all of them at once and
    returns [(step seconds, total seconds)], one per run."""
    context = multiprocessing.get_context("spawn")  # like the sweep's workers: torch's threads do not survive fork
    go, stop, results = context.Barrier(runs + 1), context.Event(), context.Queue()
    procs = [context.Process(target=_side_by_side_run, daemon=True,
                             args=(cfg.to_dict(), threads, warmup, steps, go, stop, results)) for _ in range(runs)]
    for proc in procs:
        proc.start()

    def wait_then_collect(collect: bool) -> list[tuple[list[float], float]]:
        try:
            go.wait()
        except threading.BrokenBarrierError:  # a run failed: every run has put its message
            collect = True
        timings = [results.get() for _ in procs] if collect else []
        errors = [t for t in timings if isinstance(t, str)]
        if errors:
            raise RuntimeError(f"a side-by-side run failed: {errors[0]}")
        return timings

    try:
        wait_then_collect(False)  # all warmed up
        yield lambda: wait_then_collect(True)
    finally:
        stop.set()
        if not go.broken:
            go.wait()
        for proc in procs:
            proc.join()


# ----------------------------------------------------------------------------
# 3. FLOPs of one forward + backward


def cpu_sdpa_mapping() -> dict:
    """Flop formulas for the CPU flash-attention ops that FlopCounterMode leaves at zero."""
    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    mapping = {}
    if fwd is not None and hasattr(flop_counter, "sdpa_flop_count"):
        def sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

        mapping[fwd] = sdpa_cpu_flop  # keyed by OpOverloadPacket, like torch's registry
    if bwd is not None and hasattr(flop_counter, "sdpa_backward_flop_count"):
        def sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

        mapping[bwd] = sdpa_cpu_backward_flop
    return mapping


def count_step_flops(trainer: Trainer) -> tuple[int, dict[str, int]]:
    """FLOPs of one forward + MSE loss + backward of the model on a training-shaped batch.

    Inputs are drawn like `Trainer.train_step` draws them, from a separate generator, so the
    trainer's own state is not touched; the gradients are discarded afterwards.
    """
    cfg, device, model = trainer.cfg, trainer.device, trainer.model
    batch, n = cfg.training.batch_size, cfg.data.image_size
    g = torch.Generator().manual_seed(12345)
    idx = torch.randint(len(trainer.train_conditions), (batch,), generator=g)
    labels = trainer.train_conditions[idx]
    timesteps = torch.randint(trainer.schedule.timesteps, (batch,), generator=g)
    noise = torch.randn((batch, 1, n, n), generator=g)
    drop = torch.rand(batch, generator=g) < cfg.model.label_dropout
    x0 = trainer.dataset.render(labels)
    x0, noise, labels, drop, tdev = (v.to(device) for v in (x0, noise, labels, drop, timesteps))
    x_t = trainer.schedule.add_noise(x0, noise, timesteps)

    model.zero_grad(set_to_none=True)
    counter = FlopCounterMode(display=False, custom_mapping=cpu_sdpa_mapping())
    with counter:
        eps = model(x_t, tdev, labels, drop)
        loss = F.mse_loss(eps, noise)
        loss.backward()
    model.zero_grad(set_to_none=True)
    by_op = {str(op): int(c) for op, c in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def measure(cfg, device: torch.device, steps: int, warmup: int, matmul_size: int, matmul_repeats: int,
            runs: int = 1, rounds: int = 1) -> dict:
    """The three measurements of the module docstring for one config, as one dict of numbers:
    `rounds` rounds of matmul repeats then `steps` training steps (of `runs` runs side by side),
    then matmul repeats once more, and the FLOPs of a step. Each round's fraction divides its
    training rate by the matmul rate measured just before and after it, so that the machine's
    drift (other tenants of a VM) falls out of it; the reported rates are medians over the rounds."""
    def matmul_samples() -> dict[str, list[float]]:
        return {k: matmul_gflops_samples(matmul_size, matmul_repeats, device, k) for k in MATMUL_KERNELS}

    threads = torch.get_num_threads()
    threads_per_run = threads if runs == 1 else max(1, threads // runs)
    with tempfile.TemporaryDirectory(prefix="diffrep-bench-") as tmp:
        trainer = Trainer(cfg, RunDir(tmp), device)  # never saved: the directory stays empty
        params = sum(p.numel() for p in trainer.model.parameters())
        if runs == 1:
            time_train_steps(trainer, 0, warmup)
            blocks = contextlib.nullcontext(lambda: [time_train_steps(trainer, steps, 0)])
        else:
            blocks = side_by_side_runs(cfg, runs, threads_per_run, warmup, steps)
        with blocks as train_block:
            matmul = [matmul_samples()]
            timings = []  # per round, per run: (step seconds, total seconds)
            for _ in range(rounds):
                timings.append(train_block())
                matmul.append(matmul_samples())
        flops_per_step, flops_by_op = count_step_flops(trainer)

    # the machine's matmul rate is the faster of the two libraries: the fraction must not look
    # better because one of them is slow on this CPU
    by_kernel = {k: statistics.median([x for samples in matmul for x in samples[k]]) for k in MATMUL_KERNELS}
    kernel = max(by_kernel, key=by_kernel.get)
    matmul_at = [statistics.median(samples[kernel]) for samples in matmul]  # before round 0, ..., after the last
    matmul_by_round = [(matmul_at[r] + matmul_at[r + 1]) / 2 for r in range(rounds)]
    train_by_round = [sum(flops_per_step / statistics.median(run_steps) for run_steps, _ in runs_timing) / 1e9
                      for runs_timing in timings]
    fraction_by_round = [t / m for t, m in zip(train_by_round, matmul_by_round)]
    step_times = [x for runs_timing in timings for run_steps, _ in runs_timing for x in run_steps]
    batch = cfg.training.batch_size
    step_s = statistics.median(step_times)
    return {
        "batch_size": batch,
        "params": params,
        "matmul_size": matmul_size,
        "matmul_gflops": round(statistics.median(matmul_by_round), 2),
        "matmul_kernel": kernel,
        "matmul_gflops_by_kernel": {k: round(v, 2) for k, v in by_kernel.items()},
        "matmul_gflops_before": round(matmul_at[0], 2),
        "matmul_gflops_after": round(matmul_at[-1], 2),
        "runs": runs,
        "threads_per_run": threads_per_run,
        "rounds": rounds,
        "steps": steps,
        "warmup": warmup,
        "step_s": round(step_s, 5),
        "step_s_min": round(min(step_times), 5),
        "step_s_max": round(max(step_times), 5),
        "images_per_s": round(statistics.median(
            sum(batch * steps / total_s for _, total_s in runs_timing) for runs_timing in timings), 2),
        "flops_per_step": flops_per_step,
        "flops_by_op": flops_by_op,
        "gflop_per_image": round(flops_per_step / batch / 1e9, 5),
        "train_gflops": round(statistics.median(train_by_round), 2),
        "fraction_of_matmul": round(statistics.median(fraction_by_round), 4),
        "fraction_by_round": [round(f, 4) for f in fraction_by_round],
    }


# ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of (matmul, training steps), then matmul once more")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, as for `diffrep train --set` (repeatable)")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n fp32 matmul")
    p.add_argument("--matmul-repeats", type=int, default=3, help="timed matmul repeats before each round and after the last")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave torch's choice)")
    p.add_argument("--runs", type=int, default=1,
                   help="train this many runs side by side, threads // runs torch threads each (CPU only)")
    args = p.parse_args(argv)
    least = {"--steps": (args.steps, 1), "--rounds": (args.rounds, 1), "--runs": (args.runs, 1), "--warmup": (args.warmup, 0),
             "--matmul-repeats": (args.matmul_repeats, 1), "--matmul-size": (args.matmul_size, 1)}
    for flag, (value, low) in least.items():
        if value < low:
            print(f"bench_train: {flag}: must be an integer >= {low} (got {value})", file=sys.stderr)
            return 2

    try:
        cfg = make_config(args.preset, args.overrides)
        device = resolve_device(cfg.training.device)
    except ConfigError as e:
        print(f"bench_train: {e}", file=sys.stderr)
        return 2
    if args.runs > 1 and device.type != "cpu":
        print(f"bench_train: --runs: side-by-side runs are for a CPU (allowed: 1 on {device.type})", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    m = measure(cfg, device, args.steps, args.warmup, args.matmul_size, args.matmul_repeats, args.runs, args.rounds)

    rows = [
        ("preset", args.preset + (" " + " ".join(args.overrides) if args.overrides else "")),
        ("device / threads", f"{device.type} / {threads}"
         + (f" ({args.runs} runs side by side, {m['threads_per_run']} thread{'s' if m['threads_per_run'] > 1 else ''} each)" if args.runs > 1 else "")),
        ("batch size / params", f"{m['batch_size']} / {m['params']:,}"),
        (f"matmul fp32 {args.matmul_size}^2 GFLOP/s",
         f"{m['matmul_gflops']:.1f}  ({m['matmul_kernel']}: first {m['matmul_gflops_before']:.1f}, last "
         f"{m['matmul_gflops_after']:.1f}; " + ", ".join(f"{k} {v:.1f}" for k, v in m["matmul_gflops_by_kernel"].items()) + ")"),
        ("train step s (median)", f"{m['step_s']:.4f}  (min {m['step_s_min']:.4f}, max {m['step_s_max']:.4f}, "
         f"{args.rounds} x {args.steps} steps" + (" per run)" if args.runs > 1 else ")")),
        ("train images/s", f"{m['images_per_s']:.1f}"),
        ("fwd+bwd GFLOP / step", f"{m['flops_per_step'] / 1e9:.3f}"),
        ("fwd+bwd GFLOP / image", f"{m['gflop_per_image']:.4f}"),
        ("train GFLOP/s", f"{m['train_gflops']:.1f}"),
        ("fraction of matmul", f"{m['fraction_of_matmul']:.3f}  (rounds: " + ", ".join(f"{f:.3f}" for f in m["fraction_by_round"]) + ")"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    flops_by_op = m.pop("flops_by_op")
    print("flops by op: " + ", ".join(f"{op} {c / 1e9:.3f}G" for op, c in sorted(flops_by_op.items(), key=lambda kv: -kv[1])))

    record = {"preset": args.preset, "overrides": args.overrides, "device": device.type, "threads": threads, **m,
              "torch": torch.__version__, "python": platform.python_version(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
