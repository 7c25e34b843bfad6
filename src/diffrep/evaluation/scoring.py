"""Generation scoring: sample a fixed evaluation set from a checkpoint and detect what was drawn.

The evaluation set of a run is fixed by its config: the training conditions nearest a
`grid x grid` grid of cell centres (group "train"), every held-out region evenly subsampled to
at most `heldout_max` conditions (groups "heldout_0", ...), when `keep_fraction` < 1 the
lattice points that the subsample left out (group "unseen"), and with `scoring.frame_grid` the
lattice points nearest a grid x grid grid over the frame with both labels inside it, trained on
or not (group "frame": for a stripes dataset, 2D compositions it never saw). Every checkpoint is
sampled from the same noise (`scoring.seed`), so the curve over training compares like with like.

Beside the outcomes, each group gets `denoise_loss`: the denoising loss (MSE of the predicted
noise) of its clean images at fixed timesteps (DENOISE_TIMESTEP_FRACTIONS of T) with one fixed
noise draw, a sampling-free signal of how well held-out conditions are modelled.

For each scored checkpoint, RUN_DIR/scores/ gets, per sampler (e.g. "ddim25", "ddpm1000"):
  step_XXXXXXXX_ddim25.json   summary per group (accuracy, x/y accuracy, outcome fractions, errors)
  step_XXXXXXXX_ddim25.npz    per sample: condition, group, outcome, centroid, error (no pickle)
  step_XXXXXXXX_ddim25.png    the in-distribution samples, tiled in the order of the npz
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import Config, ConfigError
from ..data import BumpDataset, evenly_spaced, in_region, lattice, render_for
from .detect import OUTCOMES, detect, summarize
from ..diffusion import make_sampler, make_schedule, sample
from ..rundir import RunDir, atomic_write, read_json


@dataclass
class EvalSet:
    conditions: np.ndarray  # [K, 2] (x, y)
    group: np.ndarray  # [K] index into names
    names: list[str]


def evaluation_set(cfg: Config) -> EvalSet:
    d, g = cfg.data, cfg.scoring.grid
    dataset = BumpDataset(d)
    train = dataset.train_conditions
    # Cell centres of a g x g grid over the lattice's range, each snapped to the nearest training condition.
    xs = d.x_min + (np.arange(g) + 0.5) * (d.x_max - d.x_min) / g
    ys = d.y_min + (np.arange(g) + 0.5) * (d.y_max - d.y_min) / g
    targets = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    nearest = nearest_index(train, targets)
    groups = [("train", train[np.unique(nearest)])]
    for i, region in enumerate(d.holdout):
        groups.append((f"heldout_{i}", evenly_spaced(dataset.conditions[in_region(dataset.conditions, region)], cfg.scoring.heldout_max)))
    unseen = dataset.conditions[~dataset.train & ~dataset.heldout]
    if len(unseen):
        groups.append(("unseen", evenly_spaced(unseen, cfg.scoring.heldout_max)))
    if cfg.scoring.frame_grid:
        groups.append(("frame", frame_conditions(d, g)))
    return EvalSet(
        conditions=np.concatenate([c for _, c in groups]),
        group=np.concatenate([np.full(len(c), i) for i, (_, c) in enumerate(groups)]),
        names=[name for name, _ in groups],
    )


def nearest_index(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target, the index of the nearest of `points`, the lowest index among equally near
    ones (what an argmin over all distances gives), through a k-d tree: memory stays O(targets)
    where a targets x points distance table would need up to 4,096 x 4,000,000 floats."""
    from scipy.spatial import cKDTree

    k = min(len(points), 8)  # on a 2D lattice at most 4 points are equally near a target
    dist, idx = cKDTree(points).query(targets, k=k)
    dist, idx = dist.reshape(len(targets), k), idx.reshape(len(targets), k)
    tied = dist <= dist[:, :1] * (1 + 1e-12)
    return np.where(tied, idx, len(points)).min(axis=1)


def frame_conditions(d, grid: int) -> np.ndarray:
    """The lattice points nearest the cell centres of a grid x grid grid over the frame, both labels
    inside the frame (each axis snapped on its own), whether the dataset holds them or not."""
    lo = (d.latent_size - d.image_size) / 2
    centres = lo + (np.arange(grid) + 0.5) * d.image_size / grid
    axes = []
    for name, (a, b, step) in (("x", (d.x_min, d.x_max, d.dx)), ("y", (d.y_min, d.y_max, d.dy))):
        values = lattice(a, b, step)
        values = values[(values >= lo - 1e-9) & (values <= lo + d.image_size + 1e-9)]
        if not len(values):
            raise ConfigError(f"scoring.frame_grid: the {name} lattice has no point inside the frame")
        axes.append(np.unique(values[np.abs(centres[:, None] - values[None, :]).argmin(axis=1)]))
    return np.stack(np.meshgrid(*axes), axis=-1).reshape(-1, 2)


# Denoising loss at these fractions of T: mid-to-late timesteps, where x_t keeps little of the image
# and the noise prediction has to come from the condition (near t = 0 a model denoises locally,
# whatever the condition).
DENOISE_TIMESTEP_FRACTIONS = (0.5, 0.75)


def denoising_loss(model, cfg: Config, conditions: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """[K] mean squared error of the prediction (the objective's target: the noise, v or the velocity)
    for each condition's clean image, averaged over the timesteps DENOISE_TIMESTEP_FRACTIONS * (T - 1),
    with one noise draw (`scoring.seed`)."""
    schedule = make_schedule(cfg.diffusion)
    x0 = render_for(conditions, cfg.data)
    labels = torch.as_tensor(conditions, dtype=torch.float32)
    generator = torch.Generator().manual_seed(cfg.scoring.seed)
    device = next(model.parameters()).device
    losses = torch.zeros(len(conditions), dtype=torch.float64)
    with torch.inference_mode():
        for fraction in DENOISE_TIMESTEP_FRACTIONS:
            t = torch.full((len(conditions),), round(fraction * (schedule.timesteps - 1)), dtype=torch.long)
            noise = torch.randn(x0.shape, generator=generator)
            x_t, target = schedule.add_noise(x0, noise, t), schedule.target(x0, noise, t)
            for start in range(0, len(conditions), batch_size):
                part = slice(start, start + batch_size)
                pred = model(x_t[part].to(device), t[part].to(device), labels[part].to(device)).float().cpu()
                losses[part] += ((pred - target[part]) ** 2).mean(dim=(1, 2, 3)).double()
    return (losses / len(DENOISE_TIMESTEP_FRACTIONS)).numpy()


def sampler_tag(cfg: Config) -> str:
    """'ddim25', 'ddim25eta0', 'ddpm1000', 'euler25', 'ddim25_raw': sampler, steps, eta (if not 1) and
    weights (if not EMA), as in file names."""
    s = cfg.scoring
    name = f"ddpm{cfg.diffusion.timesteps}" if s.sampler == "ddpm" else f"{s.sampler}{s.sampler_steps}"
    if s.sampler == "ddim" and s.eta != 1.0:
        name += f"eta{s.eta:g}"
    return name if s.weights == "ema" else f"{name}_{s.weights}"


def scoring_sampler(cfg: Config):
    """The sampler of cfg.scoring (DDIM with its steps and eta, DDPM over all T steps, or Euler with its steps)."""
    s = cfg.scoring
    return make_sampler(s.sampler, make_schedule(cfg.diffusion), None if s.sampler == "ddpm" else s.sampler_steps, s.eta)


def final_scoring(cfg: Config) -> Config:
    """cfg with the sampler of a run's final numbers: DDPM over all T steps, or for flow Euler over T
    steps (the fast sampler of the curves overstates late accuracy, docs/tuning.md)."""
    if cfg.diffusion.objective == "flow":
        return cfg.with_overrides({"scoring.sampler": "euler", "scoring.sampler_steps": cfg.diffusion.timesteps})
    return cfg.with_overrides({"scoring.sampler": "ddpm"})


def detect_samples(images, targets, cfg: Config):
    """What the detector finds in generated `images` asked for at `targets`, with the settings of
    cfg.scoring and cfg.data (detect.Detection: outcome, centroid, error per image)."""
    s, d = cfg.scoring, cfg.data
    return detect(images, targets, kind=d.kind, image_size=d.image_size, latent_size=d.latent_size,
                  periodic=d.periodic, tolerance=s.tolerance, threshold=s.threshold, min_size=s.min_size,
                  expected=lambda labels: render_for(labels, d), shape_min_r2=s.shape_min_r2,
                  shape_min_height=s.shape_min_height)


def score_model(model, cfg: Config, evalset: EvalSet | None = None):
    """Sample the evaluation set with `cfg.scoring` and score it: (summary, per-sample arrays, images)."""
    s, d = cfg.scoring, cfg.data
    evalset = evalset or evaluation_set(cfg)
    sampler = scoring_sampler(cfg)
    images = sample(model, sampler, evalset.conditions, d.image_size, seed=s.seed).cpu()
    det = detect_samples(images, evalset.conditions, cfg)
    loss = denoising_loss(model, cfg, evalset.conditions)
    summary = {"sampler": sampler_tag(cfg), "tolerance": s.tolerance, "groups": {}}
    for i, name in enumerate(evalset.names):
        values = {**summarize(det.select(evalset.group == i)), "denoise_loss": float(loss[evalset.group == i].mean())}
        # NaN (no located bump to measure an error on) is not JSON: it becomes null.
        summary["groups"][name] = {k: None if v != v else v for k, v in values.items()}
    per_sample = {
        "conditions": evalset.conditions, "group": evalset.group, "outcome": det.outcome,
        "centroid": det.centroid, "error": det.error,
    }
    return summary, per_sample, images


def flat_record(step: int, summary: dict, prefix: str = "score") -> dict:
    """One metrics.jsonl line: {"step", "score.sampler", "score.train.accuracy", ...} (`prefix`
    "final" for the final DDPM scoring of a finished run: "final.sampler", "final.train.accuracy", ...)."""
    record = {"step": step, f"{prefix}.sampler": summary["sampler"]}
    for group, values in summary["groups"].items():
        record.update({f"{prefix}.{group}.{k}": v for k, v in values.items()})
    return record


def write_scores(run: RunDir, step: int, summary: dict, per_sample: dict, images) -> None:
    """The summary (json), the per-sample arrays (npz) and the in-distribution samples tiled (png)."""
    tag = summary["sampler"]
    run.score_path(step, tag, "json").parent.mkdir(exist_ok=True)
    atomic_write(run.score_path(step, tag, "json"), json.dumps({"step": step, **summary}, indent=1).encode())
    buffer = io.BytesIO()
    np.savez(buffer, **per_sample, outcome_names=np.array(OUTCOMES))
    atomic_write(run.score_path(step, tag, "npz"), buffer.getvalue())
    atomic_write(run.score_path(step, tag, "png"), tiled_png(images[per_sample["group"] == 0]))


def tiled_png(images, cols: int = 8) -> bytes:
    """Images [B, 1, N, N] in [-1, 1] tiled into one grey PNG, 1-pixel gaps: fast, for every checkpoint."""
    from matplotlib.image import imsave  # no pyplot: nothing global is touched

    images = np.asarray(images)[:, 0]
    n, size = len(images), images.shape[-1]
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (size + 1) + 1, cols * (size + 1) + 1), 0.0)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        canvas[1 + r * (size + 1) : (r + 1) * (size + 1), 1 + c * (size + 1) : (c + 1) * (size + 1)] = img
    buffer = io.BytesIO()
    imsave(buffer, canvas, cmap="gray", vmin=-1, vmax=1, format="png")
    return buffer.getvalue()


def load_scores(run: RunDir, tag: str) -> list[dict]:
    """The per-checkpoint summaries of one sampler, by step."""
    return sorted((read_json(p) for p in run.score_files(tag)), key=lambda r: r["step"])
