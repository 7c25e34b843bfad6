"""Time to phase C: diffrep's default run against a diffusers baseline, on the same time budget.

Full measurement (on the 2-core CPU alone; about 4 x --budget-s of training plus the evaluations):

    .venv/bin/python bench/bench_time_to_c.py --budget-s 1800

`--baseline-budget-factor F` lets each baseline train only F times as long as diffrep took (or to
the end of its cosine horizon, training.steps, where that comes first). The races run so far, with
their commands, are in docs/archive/benchmarks-2026-12-03.md.

Options: [--preset default] [--set key=value ...] [--baseline-set key=value ...] [--lrs 1e-4,3e-4,1e-3]
[--baseline-grid KEY=V1,V2 ...] [--target-accuracy 0.9] [--no-phase] [--baseline-budget-factor F] [--step-time-steps 20] [--step-time-only]
[--threads N]; `--summarize LOG` prints the comparisons of a finished race (its saved output) again.
Smoke test (seconds):

    .venv/bin/python bench/bench_time_to_c.py --preset tiny --budget-s 5 --lrs 1e-3 --step-time-steps 3

What is measured, per contestant: the training wall time from the start until the first
evaluation checkpoint whose in-distribution accuracy (`score.train.accuracy`: the scoring settings
of the config, DDIM-25 with eta = 1 on the EMA weights by default) is >= --target-accuracy and, unless
--no-phase, whose phase label (`phase.<probe.layers[0]>`) is C. Step 0 is evaluated (the probes'
reference) but never counts as reaching the target.

The clocks. Every contestant is evaluated (scored and probed, as `diffrep train` does at its
checkpoints) at the same steps: the config's checkpoint schedule (`training.checkpoint_schedule` of
training.steps), continued every training.checkpoint_every steps past training.steps. Evaluation is
excluded from every clock: a clock sums the wall time of `Trainer.train_step` calls only (data
rendering, noising, forward, backward, grad clip, AdamW, EMA), so the number compares how fast
training gets there, not how fast each network samples. No checkpoint files are written. A
contestant stops at the target or once its clock passes --budget-s (the same budget for all; with
--baseline-budget-factor F and diffrep at the target after T s, min(--budget-s, F T) for the
baselines, whose ratio is then at least F where they miss the target), or,
with a decaying learning rate (the default preset's cosine), at training.steps where the rate
reaches 0: `--set training.steps=N` sets that horizon, `--set training.lr_decay=constant` removes it.

The contestants, trained one after the other in this process:
  diffrep   `training.Trainer` of the config, exactly as `diffrep train` builds it.
  diffusers one run per learning rate of --lrs and point of --baseline-grid (e.g. `--baseline-grid
            training.adam_beta2=0.99,0.999`); the reported baseline is the run that reached the
            target soonest, else the one with the highest accuracy at any checkpoint. It is a
            `training.Trainer` of the same config (training.lr = that lr) whose network, forward
            noising and optimizer are replaced, so the data stream is the same by construction
            (the same seeded draws of conditions, timesteps and noise, `BumpDataset.render`, batch
            size), and so are the loss (MSE on the noise, unweighted as in diffusers' training examples:
            training.loss_weighting = uniform whatever diffrep's is; `--baseline-set
            training.loss_weighting=min_snr` gives it diffrep's weighting), grad clipping, EMA (diffrep's, with the
            config's decay; scoring reads the EMA weights for both) and every evaluation:
    network    diffusers.UNet2DModel(sample_size=N, in/out channels 1, block_out_channels =
               model.widths, layers_per_block=1, AttnDown/AttnUp blocks at the levels whose feature
               map is in model.attention_resolutions, like diffrep's, plus its mid block's attention;
               norm_num_groups = model.groups, one attention head (attention_head_dim=None),
               resnet_time_scale_shift="scale_shift" and time_embedding_dim = 3 model.emb_dim, the
               conditioning of diffrep's blocks), wrapped in `DiffusersUNet`: class_embed_type=
               "identity", and its class embedding is a linear projection of diffrep's own
               sinusoidal encodings of x and of y (`diffrep.model.SinusoidalEncoding`), which
               UNet2DModel adds to its time embedding. The wrapper has diffrep's model call
               signature (x_t, t, labels) -> eps, so `scoring.score_model` (its DDIM sampler and
               detector) and `probes` run on it unchanged. Left at diffusers' defaults: its 2 res
               blocks per up block and in the mid block, its timestep encoding, contiguous layout.
    noising    diffusers.DDPMScheduler (linear betas, diffusion.beta_start..beta_end, T =
               diffusion.timesteps).add_noise, for training and for the probe input.
    optimizer  `training.adamw`, diffrep's own: the config's rate, weight decay and betas (0.9,
               training.adam_beta2; `--baseline-set training.adam_beta2=0.999` gives torch's
               default), in torch's default implementation (diffrep's Trainer may pick a
               faster implementation of the same update: that is part of what is compared).
    phase      the same probe set, metrics and rule, on the analogue of diffrep's layer4 (down3):
               the output of the last down block (res block + attention at N/4, before the
               bottleneck), labelled against the baseline's own step-0 metrics. The rule's
               thresholds were calibrated on diffrep's layer4; --no-phase drops the phase
               condition for every contestant.

A race for accuracy and phase C is also summarized for the accuracy alone, read off the same
curves: a contestant that stopped at both passed the accuracy on the way; the bounds then use the
time it trained.

Before the races, --step-time-steps interleaved training steps of a fresh diffrep and baseline
trainer give their per-step times side by side (and their fwd+bwd FLOPs, bench_train's counter);
--step-time-only stops there. Reported: per contestant reached (yes/no), training seconds and step
at the target, steps trained, the accuracy and phase curve; the ratio baseline / diffrep training
time where both reached the target, else a bound (budget / diffrep time when only diffrep did).
No assertions on speed; the last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bench_train import count_step_flops, sync
from diffrep.config import LAYER_ALIASES, Config, ConfigError, DiffusionConfig, make_config, parse_override
from diffrep.diffusion import NoiseSchedule
from diffrep.evaluation.evaluate import Evaluator
from diffrep.model import SinusoidalEncoding, capture_outputs
from diffrep.rundir import RunDir
from diffrep.sweep.grid import expand_grid, parse_grid
from diffrep.training import EMA, Trainer, adamw, checkpoint_schedule, learning_rate, resolve_device


class DiffusersUNet(nn.Module):
    """diffusers.UNet2DModel behind diffrep's model interface: (x_t, t, labels[, drop_labels]) -> eps,
    and `capture` of hook points (module docstring: the architecture)."""

    def __init__(self, cfg: Config):
        # diffusers is imported where the baseline is built, so that the diffrep contestant (`race`,
        # which bench_gpu.py uses) runs where diffusers is not installed, such as a lent GPU machine.
        from diffusers import UNet2DModel

        super().__init__()
        m, n = cfg.model, cfg.data.image_size
        if m.heads != 1 or m.label_encoding != "sinusoidal":
            raise ConfigError("the diffusers baseline needs model.heads = 1 and model.label_encoding = sinusoidal")
        attention = [size in m.attention_resolutions for size in (n, n // 2, n // 4)]
        cond_dim = 3 * m.emb_dim
        self.unet = UNet2DModel(
            sample_size=n, in_channels=1, out_channels=1, block_out_channels=tuple(m.widths), layers_per_block=1,
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
            norm_num_groups=m.groups, attention_head_dim=None, resnet_time_scale_shift="scale_shift",
            time_embedding_dim=cond_dim, class_embed_type="identity",
        )
        self.encode = SinusoidalEncoding(m.emb_dim, m.label_max_period)  # one encoding, applied to x and to y
        self.label_projection = nn.Linear(2 * m.emb_dim, cond_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                drop_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.label_projection(torch.cat([self.encode(labels[:, 0]), self.encode(labels[:, 1])], dim=1))
        if drop_labels is not None:  # as diffrep: a dropped label contributes nothing to the conditioning
            emb = emb * (~drop_labels).to(emb.dtype)[:, None]
        return self.unet(x, t, class_labels=emb).sample

    def capture(self, names, stop_early: bool = False):
        """`diffrep.model.UNet.capture` on the analogous blocks (layer4 = down3, mid = bottleneck)."""
        return capture_outputs({"down3": self.unet.down_blocks[-1], "mid": self.unet.mid_block}, names, stop_early,
                               LAYER_ALIASES)


class DiffusersNoising(NoiseSchedule):
    """diffrep's schedule object (T, for the loss buckets) whose forward process is diffusers'."""

    def __init__(self, cfg: DiffusionConfig):
        from diffusers import DDPMScheduler

        super().__init__(cfg)
        self.scheduler = DDPMScheduler(num_train_timesteps=cfg.timesteps, beta_start=cfg.beta_start,
                                       beta_end=cfg.beta_end, beta_schedule="linear")

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(x0, noise, t)


class DiffusersTrainer(Trainer):
    """A diffrep Trainer whose network, forward noising and optimizer are the diffusers baseline's."""

    def __post_init__(self):
        super().__post_init__()
        t = self.cfg.training
        torch.manual_seed(t.seed)
        self.model = DiffusersUNet(self.cfg).to(self.device)
        self.ema = EMA(self.model, t.ema_decay)
        self.optimizer = adamw(self.model.parameters(), t)  # torch's default implementation
        self.schedule = DiffusersNoising(self.cfg.diffusion)
        # Trainer.evaluated_model copies the EMA weights into this model by parameter name.
        with torch.random.fork_rng():
            self.eval_model = DiffusersUNet(self.cfg).to(self.device)


def param_count(trainer: Trainer) -> int:
    return sum(p.numel() for p in trainer.model.parameters())


# ----------------------------------------------------------------------------
# Per-step time, side by side.


def step_times_side_by_side(cfg: Config, baseline_cfg: Config, steps: int, warmup: int, device) -> dict:
    """Median seconds per train_step of fresh diffrep and baseline trainers, stepped alternately
    (the order flips every round, so drift from other load hits both alike), and their FLOPs."""
    with tempfile.TemporaryDirectory(prefix="diffrep-bench-") as tmp:
        trainers = {"diffrep": Trainer(cfg, RunDir(tmp), device),  # never written to
                    "diffusers": DiffusersTrainer(baseline_cfg, RunDir(tmp), device)}
        for trainer in trainers.values():
            for _ in range(warmup):
                trainer.train_step()
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for i in range(steps):
            for name in (list(trainers) if i % 2 == 0 else list(reversed(trainers))):
                sync(device)
                t0 = time.perf_counter()
                trainers[name].train_step()
                sync(device)
                times[name].append(time.perf_counter() - t0)
        result = {name: {"params": param_count(trainer), "step_s": round(statistics.median(times[name]), 5),
                         "step_s_min": round(min(times[name]), 5), "step_s_max": round(max(times[name]), 5),
                         "gflop_per_step": round(count_step_flops(trainer)[0] / 1e9, 4)}
                  for name, trainer in trainers.items()}
    result["ratio_diffusers_to_diffrep"] = round(result["diffusers"]["step_s"] / result["diffrep"]["step_s"], 3)
    return result


# ----------------------------------------------------------------------------
# The race.


def evaluate(trainer: Trainer) -> dict:
    """Score and probe the trainer's current step as `diffrep train` does (without the final DDPM
    scoring); the numbers it logged."""
    t0 = time.perf_counter()
    Evaluator(trainer.cfg.with_overrides({"scoring.final_ddpm": False}), trainer.run)(trainer.evaluated_model(), trainer.step)
    logged = {}
    for record in trainer.run.metrics():
        if record["step"] == trainer.step:
            logged.update(record)
    layer = trainer.cfg.probe.layers[0]
    return {"step": trainer.step, "accuracy": logged["score.train.accuracy"],
            "frac_several": logged["score.train.frac_several"], "frac_wrong": logged["score.train.frac_wrong"],
            "frac_none": logged["score.train.frac_none"], "phase": logged.get(f"phase.{layer}"),
            "knn_overlap": logged.get(f"probe.{layer}.knn_overlap"), "eval_s": round(time.perf_counter() - t0, 2)}


def meets(point: dict, target: float, need_phase: bool) -> bool:
    """An evaluation reaches the target (step 0, the probes' reference, never does)."""
    return point["step"] > 0 and point["accuracy"] >= target and (not need_phase or point["phase"] == "C")


def at_target(result: dict, target: float, need_phase: bool) -> dict:
    """A race result read again for another target off its curve: a race that stopped at accuracy
    and phase C passed the accuracy alone on the way, at the first evaluation that met it."""
    point = next((p for p in result["curve"] if meets(p, target, need_phase)), None)
    return {**result, "reached": point is not None, "train_s": point["train_s"] if point else None,
            "step": point["step"] if point else None}


def race(name: str, trainer: Trainer, budget_s: float, target: float, need_phase: bool) -> dict:
    """Train until the target is met at an evaluation step or the training clock passes budget_s."""
    t = trainer.cfg.training
    schedule = set(checkpoint_schedule(t.steps, t.checkpoint_log_points, t.checkpoint_every))
    clock = 0.0
    curve, reached = [], None
    while True:
        if trainer.step in schedule or (trainer.step > t.steps and trainer.step % t.checkpoint_every == 0):
            point = {**evaluate(trainer), "train_s": round(clock, 3)}
            curve.append(point)
            print(f"{name:>18}  step {point['step']:6d}  train {clock:8.1f} s  accuracy {point['accuracy']:.3f}"
                  f"  phase {point['phase']}  (evaluation {point['eval_s']:.1f} s, not counted)", flush=True)
            if meets(point, target, need_phase):
                reached = point
                break
        if clock >= budget_s or (trainer.step >= t.steps and learning_rate(t, trainer.step) == 0):
            break  # past a decaying schedule's end the learning rate is 0: nothing more to learn
        sync(trainer.device)
        t0 = time.perf_counter()
        trainer.train_step()
        sync(trainer.device)
        clock += time.perf_counter() - t0
    best = max(curve, key=lambda p: p["accuracy"])
    return {"name": name, "lr": trainer.cfg.training.lr, "params": param_count(trainer), "reached": reached is not None,
            "train_s": reached["train_s"] if reached else None, "step": reached["step"] if reached else None,
            "steps_trained": trainer.step, "train_clock_s": round(clock, 3),
            "step_s_mean": round(clock / trainer.step, 5) if trainer.step else None,
            "best_accuracy": best["accuracy"], "best_accuracy_step": best["step"], "curve": curve}


def compare(diffrep: dict, baseline: dict) -> dict:
    """baseline time / diffrep time, or the bound that the time one of them trained without
    reaching the target allows (a budget, or the end of a decaying learning rate)."""
    if diffrep["reached"] and baseline["reached"]:
        return {"kind": "measured", "ratio": round(baseline["train_s"] / max(diffrep["train_s"], 1e-9), 3)}
    if diffrep["reached"]:
        return {"kind": "lower bound (the baseline did not reach the target in the time it trained)",
                "ratio": round(baseline["train_clock_s"] / max(diffrep["train_s"], 1e-9), 3)}
    if baseline["reached"]:
        return {"kind": "upper bound (diffrep did not reach the target in the time it trained)",
                "ratio": round(baseline["train_s"] / max(diffrep["train_clock_s"], 1e-9), 3)}
    return {"kind": "not reached by either", "ratio": None}


def summarize(record: dict) -> dict:
    """Print the comparison for the race's target and, where that asked for phase C too, for the
    accuracy alone, read off the same curves (`at_target`); return {target: comparison}."""
    print(f"\nbudget {record['budget_s']:g} training seconds for diffrep, {record['baseline_budget_s']:g} for each baseline")
    comparisons = {}
    for need_phase in sorted({record["phase_condition"], False}, reverse=True):
        ours = at_target(record["diffrep"], record["target_accuracy"], need_phase)
        baselines = [at_target(b, record["target_accuracy"], need_phase) for b in record["baselines"]]
        reached = [r for r in baselines if r["reached"]]
        best = min(reached, key=lambda r: r["train_s"]) if reached else max(baselines, key=lambda r: r["best_accuracy"])
        # Where no baseline got there, the bound is set by the one that trained the shortest time.
        comparison = compare(ours, best if reached else min(baselines, key=lambda r: r["train_clock_s"]))
        target = f"accuracy >= {record['target_accuracy']}" + (" and phase C" if need_phase else "")
        print(f"\ntarget: {target}")
        width = max(len(r["name"]) for r in [ours, *baselines])
        print(f"{'contestant':>{width}} {'reached':>8} {'train s':>9} {'at step':>8} {'steps':>7} {'s/step':>8} {'best acc (step)':>16}")
        for r in [ours, *baselines]:
            train_s, step = (f"{r['train_s']:.1f}", r["step"]) if r["reached"] else ("-", "-")
            print(f"{r['name']:>{width}} {'yes' if r['reached'] else 'no':>8} {train_s:>9} "
                  f"{step:>8} {r['steps_trained']:>7} {r['step_s_mean'] or 0:>8.4f} "
                  f"{r['best_accuracy']:>9.3f} ({r['best_accuracy_step']})")
        ratio = comparison["ratio"]
        print(f"best baseline: {best['name']}; baseline time / diffrep time: "
              f"{'-' if ratio is None else f'{ratio:.2f}'} ({comparison['kind']}; goal of the performance issue: >= 3)")
        comparisons[target] = {**comparison, "best_baseline": best["name"], "best_baseline_lr": best["lr"]}
    return comparisons


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every contestant, as for `diffrep train --set` (repeatable)")
    p.add_argument("--baseline-set", dest="baseline_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a further override for the baselines only (after training.loss_weighting=uniform)")
    p.add_argument("--budget-s", type=float, default=1800.0, help="training seconds per contestant (evaluation not counted)")
    p.add_argument("--lrs", default="1e-4,3e-4,1e-3", help="learning rates of the baseline, one run each")
    p.add_argument("--baseline-grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="more baseline variants, as `diffrep sweep --grid`: one run per point of the grid x --lrs")
    p.add_argument("--target-accuracy", type=float, default=0.9)
    p.add_argument("--baseline-budget-factor", type=float, default=None, metavar="F",
                   help="a baseline trains at most F x diffrep's time to the target (and --budget-s)")
    p.add_argument("--no-phase", action="store_true", help="the target is the accuracy alone (no phase C condition)")
    p.add_argument("--step-time-steps", type=int, default=20, help="interleaved steps of the side-by-side step time")
    p.add_argument("--step-time-warmup", type=int, default=3)
    p.add_argument("--step-time-only", action="store_true", help="measure the side-by-side step time, then stop")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave torch's choice)")
    p.add_argument("--summarize", metavar="LOG", default=None,
                   help="print the comparisons of a finished race again from its output (its last line), train nothing")
    args = p.parse_args(argv)
    if args.summarize:
        try:
            summarize(json.loads(Path(args.summarize).read_text().strip().splitlines()[-1]))
        except (OSError, IndexError, KeyError, TypeError, ValueError) as e:
            print(f"bench_time_to_c: --summarize {args.summarize}: not the output of a race ({type(e).__name__}: {e})",
                  file=sys.stderr)
            return 2
        return 0
    if args.budget_s <= 0 or args.step_time_steps < 1 or args.step_time_warmup < 0 or (args.baseline_budget_factor or 1) <= 0:
        p.error("--budget-s, --baseline-budget-factor and --step-time-steps must be > 0, --step-time-warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        lrs = [float(v) for v in args.lrs.split(",")]
        cfg = make_config(args.preset, args.overrides)
        baseline = {"training.loss_weighting": "uniform", **dict(map(parse_override, args.baseline_overrides))}
        variants = parse_grid(args.baseline_grid)
        if "training.lr" in variants:
            raise ConfigError("--baseline-grid: training.lr is set by --lrs")
        grid = {"training.lr": lrs, **variants}
        # named as sweep runs are, less the seed: "diffusers training.adam_beta2=0.999,training.lr=0.001"
        baseline_cfgs = [("diffusers " + run.rsplit(",seed=", 1)[0], c)
                         for run, c in expand_grid(cfg.with_overrides(baseline), grid, [cfg.training.seed])]
        device = resolve_device(cfg.training.device)
        side_by_side = step_times_side_by_side(cfg, baseline_cfgs[0][1], args.step_time_steps, args.step_time_warmup, device)
    except (ConfigError, ValueError) as e:
        print(f"bench_time_to_c: {e}", file=sys.stderr)
        return 2
    d, b = side_by_side["diffrep"], side_by_side["diffusers"]
    print(f"step time, {args.step_time_steps} interleaved steps each (median, min-max): "
          f"diffrep {d['step_s']:.4f} s ({d['step_s_min']:.4f}-{d['step_s_max']:.4f}, {d['params']:,} params, "
          f"{d['gflop_per_step']:.3f} GFLOP), diffusers {b['step_s']:.4f} s ({b['step_s_min']:.4f}-{b['step_s_max']:.4f}, "
          f"{b['params']:,} params, {b['gflop_per_step']:.3f} GFLOP); diffusers / diffrep {side_by_side['ratio_diffusers_to_diffrep']:.2f}",
          flush=True)

    record = {"preset": args.preset, "overrides": args.overrides, "baseline_overrides": baseline, "device": device.type,
              "threads": torch.get_num_threads(), "step_time": side_by_side}
    if not args.step_time_only:
        need_phase = not args.no_phase
        with tempfile.TemporaryDirectory(prefix="diffrep-bench-") as tmp:
            ours = race("diffrep", Trainer(cfg, RunDir.create(Path(tmp) / "diffrep", cfg), device),
                        args.budget_s, args.target_accuracy, need_phase)
            baseline_budget_s = args.budget_s
            if args.baseline_budget_factor and ours["reached"]:
                baseline_budget_s = min(args.budget_s, args.baseline_budget_factor * ours["train_s"])
            baselines = [race(name, DiffusersTrainer(c, RunDir.create(Path(tmp) / f"diffusers-{i}", c), device),
                              baseline_budget_s, args.target_accuracy, need_phase)
                         for i, (name, c) in enumerate(baseline_cfgs)]
        record.update({"target_accuracy": args.target_accuracy, "phase_condition": need_phase, "budget_s": args.budget_s,
                       "baseline_budget_s": baseline_budget_s, "diffrep": ours, "baselines": baselines})
        record["comparisons"] = summarize(record)
    record.update({"torch": torch.__version__, "python": platform.python_version(),
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
