"""Generation scoring: sample a fixed evaluation set from a checkpoint and detect what was drawn.

The evaluation set of a run is fixed by its config: the training conditions nearest a
`grid x grid` grid of cell centres (group "train"), every held-out region evenly subsampled to
at most `heldout_max` conditions (groups "heldout_0", ...), and, when `keep_fraction` < 1, the
lattice points that the subsample left out (group "unseen"). Every checkpoint is sampled from
the same noise (`scoring.seed`), so the curve over training compares like with like.

For each scored checkpoint, RUN_DIR/scores/ gets, per sampler (e.g. "ddim25", "ddpm1000"):
  step_XXXXXXXX_ddim25.json   summary per group (accuracy, x/y accuracy, outcome fractions, errors)
  step_XXXXXXXX_ddim25.npz    per sample: condition, group, outcome, centroid, error (no pickle)
  step_XXXXXXXX_ddim25.png    the in-distribution samples, tiled in the order of the npz
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from .config import Config
from .data import BumpDataset, evenly_spaced, in_region
from .detect import OUTCOMES, detect, summarize
from .diffusion import NoiseSchedule, make_sampler, sample
from .plots import save_tiled
from .rundir import RunDir, atomic_write


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
    nearest = np.argmin(((targets[:, None, :] - train[None, :, :]) ** 2).sum(-1), axis=1)
    groups = [("train", train[np.unique(nearest)])]
    for i, region in enumerate(d.holdout):
        groups.append((f"heldout_{i}", evenly_spaced(dataset.conditions[in_region(dataset.conditions, region)], cfg.scoring.heldout_max)))
    unseen = dataset.conditions[~dataset.train & ~dataset.heldout]
    if len(unseen):
        groups.append(("unseen", evenly_spaced(unseen, cfg.scoring.heldout_max)))
    return EvalSet(
        conditions=np.concatenate([c for _, c in groups]),
        group=np.concatenate([np.full(len(c), i) for i, (_, c) in enumerate(groups)]),
        names=[name for name, _ in groups],
    )


def sampler_tag(cfg: Config) -> str:
    """'ddim25', 'ddim25eta0', 'ddpm1000', 'ddim25_raw': sampler, steps, eta (if not 1) and weights
    (if not EMA), as in file names."""
    s = cfg.scoring
    name = f"ddim{s.sampler_steps}" if s.sampler == "ddim" else f"ddpm{cfg.diffusion.timesteps}"
    if s.sampler == "ddim" and s.eta != 1.0:
        name += f"eta{s.eta:g}"
    return name if s.weights == "ema" else f"{name}_{s.weights}"


def score_model(model, cfg: Config, evalset: EvalSet | None = None):
    """Sample the evaluation set with `cfg.scoring` and score it: (summary, per-sample arrays, images)."""
    s, d = cfg.scoring, cfg.data
    evalset = evalset or evaluation_set(cfg)
    sampler = make_sampler(s.sampler, NoiseSchedule(cfg.diffusion), s.sampler_steps if s.sampler == "ddim" else None, s.eta)
    images = sample(model, sampler, evalset.conditions, d.image_size, seed=s.seed).cpu()
    det = detect(images, evalset.conditions, kind=d.kind, image_size=d.image_size, latent_size=d.latent_size,
                 periodic=d.periodic, tolerance=s.tolerance, threshold=s.threshold, min_size=s.min_size)
    summary = {"sampler": sampler_tag(cfg), "tolerance": s.tolerance, "groups": {}}
    for i, name in enumerate(evalset.names):
        values = summarize(det.select(evalset.group == i))
        # NaN (no located bump to measure an error on) is not JSON: it becomes null.
        summary["groups"][name] = {k: None if v != v else v for k, v in values.items()}
    per_sample = {
        "conditions": evalset.conditions, "group": evalset.group, "outcome": det.outcome,
        "centroid": det.centroid, "error": det.error,
    }
    return summary, per_sample, images


def flat_record(step: int, summary: dict) -> dict:
    """One metrics.jsonl line: {"step", "score.sampler", "score.train.accuracy", ...}."""
    record = {"step": step, "score.sampler": summary["sampler"]}
    for group, values in summary["groups"].items():
        record.update({f"score.{group}.{k}": v for k, v in values.items()})
    return record


def write_scores(run: RunDir, step: int, summary: dict, per_sample: dict, images) -> None:
    tag = summary["sampler"]
    folder = run.path / "scores"
    folder.mkdir(exist_ok=True)
    stem = f"step_{step:08d}_{tag}"
    atomic_write(folder / f"{stem}.json", json.dumps({"step": step, **summary}, indent=1).encode())
    buffer = io.BytesIO()
    np.savez(buffer, **per_sample, outcome_names=np.array(OUTCOMES))
    atomic_write(folder / f"{stem}.npz", buffer.getvalue())
    save_tiled(images[per_sample["group"] == 0], folder / f"{stem}.png")


def load_scores(run: RunDir, tag: str) -> list[dict]:
    """The per-checkpoint summaries of one sampler, by step."""
    folder = run.path / "scores"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob(f"step_*_{tag}.json"))] if folder.is_dir() else []
    return sorted(records, key=lambda r: r["step"])
