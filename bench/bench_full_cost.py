"""What each experiment costs at `--scale full`, in counted FLOPs, and in GPU hours at a stated rate.

    .venv/bin/python bench/bench_full_cost.py [--scale full] [--tflops 10] [--experiments density,sigma]

For every experiment that trains, its plan at the scale (`experiments.catalog.plan`, the grid expanded
over its seeds) is costed run by run from FLOPs counted by `torch.utils.flop_counter.FlopCounterMode`
on the run's own network (one count per distinct model, image size and batch; attention counted with
bench_train.py's formulas for the CPU's kernels):

  training    training.steps x (forward + MSE loss + backward of one batch)
  scoring     per checkpoint: the evaluation set's conditions x the scoring sampler's model calls x the
              forward of one image; the last checkpoint again with the final sampler (DDPM over T
              steps) where scoring.final_ddpm
  probing     per checkpoint: probe.grid^2 conditions x probe.draws x the forward of one image (the
              whole network: an upper bound, the probe stops after its last layer)

The FLOPs are counted, not assumed. The hours are not measured: they divide the FLOPs by --tflops,
a sustained rate that a lent GPU would have to show (bench/bench_gpu.py measures it: images/s and
the fraction of the matmul rate that training reaches). Nothing is trained; about a minute on the CPU.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench_train import cpu_sdpa_mapping
from diffrep.config import ConfigError
from diffrep.evaluation.scoring import evaluation_set, final_scoring, scoring_sampler
from diffrep.experiments.catalog import EXPERIMENTS, SCALES, plan
from diffrep.model import build_model
from diffrep.sweep.grid import expand_grid
from diffrep.training import checkpoint_schedule


def network_flops(cfg) -> tuple[int, int]:
    """(one training batch's forward + loss + backward, one image's forward) of cfg's network."""
    torch.manual_seed(0)
    model = build_model(cfg)
    n, batch = cfg.data.image_size, cfg.training.batch_size
    t = torch.randint(cfg.diffusion.timesteps, (batch,))
    labels = torch.rand(batch, 2) * cfg.data.latent_size
    x = torch.randn(batch, 1, n, n)
    # bench_train's mapping: FlopCounterMode counts the CPU's flash-attention kernels as zero otherwise
    with FlopCounterMode(display=False, custom_mapping=cpu_sdpa_mapping()) as train:
        F.mse_loss(model(x, t, labels), torch.randn_like(x)).backward()
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=cpu_sdpa_mapping()) as forward:
        model(x[:1], t[:1], labels[:1])
    return int(train.get_total_flops()), int(forward.get_total_flops())


def model_calls(cfg) -> int:
    """Model calls of one sampling run with cfg.scoring's sampler."""
    return len(scoring_sampler(cfg).timesteps)


def run_flops(cfg, flops: dict) -> dict[str, float]:
    """{"training", "scoring", "probing"} FLOPs of one run."""
    key = (repr(cfg.model), cfg.data.image_size, cfg.training.batch_size)
    if key not in flops:
        flops[key] = network_flops(cfg)
    step, forward = flops[key]
    t, s, p = cfg.training, cfg.scoring, cfg.probe
    checkpoints = len(checkpoint_schedule(t.steps, t.checkpoint_log_points, t.checkpoint_every))
    conditions = len(evaluation_set(cfg).conditions) if s.during_training else 0
    scoring = checkpoints * conditions * model_calls(cfg) * forward
    if s.during_training and s.final_ddpm:
        scoring += conditions * model_calls(final_scoring(cfg)) * forward
    probing = checkpoints * p.grid**2 * p.draws * forward if p.during_training else 0
    return {"training": float(t.steps * step), "scoring": float(scoring), "probing": float(probing)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="full", choices=SCALES)
    ap.add_argument("--tflops", type=float, default=10.0, help="the sustained rate (TFLOP/s) the hours assume")
    ap.add_argument("--experiments", help="comma separated (default: every experiment that trains)")
    args = ap.parse_args(argv)
    names = args.experiments.split(",") if args.experiments else [n for n, e in EXPERIMENTS.items() if e.trains]
    torch.set_num_threads(1)
    flops: dict = {}
    print(f"{'experiment':<12} {'runs':>5} {'training':>10} {'scoring':>10} {'probing':>10} {'total':>10} "
          f"{'hours at ' + format(args.tflops, 'g') + ' TFLOP/s':>22}   (PFLOP)")
    grand = 0.0
    try:
        for name in names:
            p = plan(name, args.scale)
            configs = [cfg for _, cfg in expand_grid(p.base, p.grid, p.seeds)]
            parts = {"training": 0.0, "scoring": 0.0, "probing": 0.0}
            for cfg in configs:
                for part, value in run_flops(cfg, flops).items():
                    parts[part] += value
            total = sum(parts.values())
            grand += total
            print(f"{name:<12} {len(configs):>5} " + " ".join(f"{v / 1e15:>10.2f}" for v in parts.values())
                  + f" {total / 1e15:>10.2f} {total / (args.tflops * 1e12) / 3600:>22.1f}", flush=True)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"{'all':<12} {'':>5} {'':>10} {'':>10} {'':>10} {grand / 1e15:>10.2f} "
          f"{grand / (args.tflops * 1e12) / 3600:>22.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
