"""A grid of samples from a checkpoint, each tile titled with its condition and marked at it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import BumpDataset, evenly_spaced
from ..diffusion import make_sampler, make_schedule, sample
from ..evaluation.scoring import sampler_tag
from ..plots import save_sample_grid
from ..rundir import RunDir
from ..training import load_model


def default_conditions(cfg, count: int = 16) -> np.ndarray:
    """`count` conditions spread evenly through the dataset's lattice (held-out ones included)."""
    return evenly_spaced(BumpDataset(cfg.data).conditions, count)


def write_samples(run: RunDir, step: int, conditions, sampler_name: str, steps: int, eta: float, seed: int,
                  ema: bool = True, out: Path | None = None, device: str | torch.device = "cpu") -> Path:
    """Draw `conditions` from checkpoint `step`, loaded onto `device`, and write the grid to `out` (default
    `RunDir.sample_path`, named like the scores: `scoring.sampler_tag`), its title naming the
    sampler, its steps and eta, the weights and the seed."""
    cfg = run.config()
    sampler = make_sampler(sampler_name, make_schedule(cfg.diffusion), None if sampler_name == "ddpm" else steps, eta)
    images = sample(load_model(run, step, ema=ema, device=device), sampler, conditions, cfg.data.image_size, seed=seed)
    tag = sampler_tag(cfg.with_overrides({"scoring.sampler": sampler_name, "scoring.sampler_steps": steps,
                                          "scoring.eta": eta, "scoring.weights": "ema" if ema else "raw"}))
    path = out or run.sample_path(step, tag, seed)
    how = {"ddim": f"DDIM {steps} steps, eta {eta:g}", "ddpm": f"DDPM {cfg.diffusion.timesteps} steps",
           "euler": f"Euler {steps} steps"}[sampler_name]
    title = f"{run.path.name}  step {step}  {how}  {'EMA' if ema else 'raw'} weights  seed {seed}"
    save_sample_grid(images.cpu(), conditions, path, title, cfg.data.latent_size, cfg.data.image_size)
    return path
