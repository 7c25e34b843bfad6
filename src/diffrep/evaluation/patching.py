"""Activation patching: does the network use a layer's code of (x, y) to place the bump?

A probe reads a code by correlation; patching tests it causally. For pairs of training conditions
(c1, c2) at least PAIR_MIN_DISTANCE apart, the network samples at c1 (the source run) while one hook
point's output is recorded at every sampling step; then it samples at c2 from the same noise while
that output is replaced, step by step, by the source run's (`UNet.intervene`). Where the bump of the
patched sample lands measures how much of the position that layer's output carries:

    displacement fraction  f = ((p - c2) . (c1 - c2)) / |c1 - c2|^2

with p the bump the detector locates (one bump found; scoring.detect_samples). f = 0: the bump stays
at c2 (what places it reaches the output through other paths: the skip connections and the
conditioning every block receives); f = 1: it moves to c1 (this output alone places it). Beside each
layer, the same fraction of the unpatched samples at c2 (the null, near 0) and at c1 (the ceiling,
near 1 once generation is accurate) give the scale.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from ..config import Config
from ..data import BumpDataset
from ..diffusion import sample
from ..rundir import RunDir, atomic_write, read_json
from ..training import load_model
from .detect import ACCURATE, SEVERAL, NONE
from .scoring import detect_samples, scoring_sampler

PAIR_MIN_DISTANCE = 8.0  # pixels from c1 to c2: a displacement far beyond the detector's tolerance (0.5)
PAIRS = 32  # condition pairs per checkpoint (a batch of 32 samples per layer)


def condition_pairs(cfg: Config, count: int = PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` pairs (c1, c2) of training conditions, each pair at least PAIR_MIN_DISTANCE apart,
    drawn with a fixed seed: the same pairs at every checkpoint and layer."""
    conditions = BumpDataset(cfg.data).train_conditions
    rng = np.random.default_rng(seed)
    sources, targets = [], []
    while len(sources) < count:
        i, j = rng.integers(len(conditions), size=2)
        if np.linalg.norm(conditions[i] - conditions[j]) >= PAIR_MIN_DISTANCE:
            sources.append(conditions[i])
            targets.append(conditions[j])
    return np.array(sources), np.array(targets)


def record_outputs(model, cfg: Config, labels: np.ndarray, layers: list[str]) -> tuple[torch.Tensor, dict]:
    """Sample `labels` with the scoring sampler and seed; returns the images and, per layer, its
    output at every sampling step, in order."""
    outputs = {layer: [] for layer in layers}
    keep = {layer: (lambda a, kept=kept: kept.append(a.clone())) for layer, kept in outputs.items()}
    with model.intervene(keep):  # each function returns None: the run itself is not changed
        images = sample(model, scoring_sampler(cfg), labels, cfg.data.image_size, seed=cfg.scoring.seed)
    return images, outputs


def patched_sample(model, cfg: Config, labels: np.ndarray, layer: str, outputs: list[torch.Tensor]) -> torch.Tensor:
    """Sample `labels` from the same noise as `record_outputs`, the layer's output at each step replaced
    by `outputs` of that step."""
    steps = iter(outputs)
    with model.intervene({layer: lambda a: next(steps)}):
        return sample(model, scoring_sampler(cfg), labels, cfg.data.image_size, seed=cfg.scoring.seed)


def displacement_fractions(positions: np.ndarray, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """f = ((p - c2) . (c1 - c2)) / |c1 - c2|^2 per pair; NaN where no bump was located (p NaN)."""
    d = sources - targets
    return ((positions - targets) * d).sum(axis=1) / (d * d).sum(axis=1)


def located_positions(images, targets: np.ndarray, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """The located bump of each image in label units (NaN where the detector found none or several)
    and the outcome codes (detect.OUTCOMES)."""
    det = detect_samples(images.cpu(), targets, cfg)
    positions = targets + det.error
    positions[np.isin(det.outcome, (NONE, SEVERAL))] = np.nan
    return positions, det.outcome


def summary(fractions: np.ndarray) -> dict:
    """Median of the defined fractions and how many there were."""
    defined = fractions[~np.isnan(fractions)]
    return {"median_fraction": float(np.median(defined)) if len(defined) else None, "located": int(len(defined)),
            "n": int(len(fractions)), "fractions": [None if np.isnan(f) else float(f) for f in fractions]}


@torch.no_grad()
def patch_checkpoint(model, cfg: Config, layers: list[str], pairs: tuple[np.ndarray, np.ndarray]) -> dict:
    """The displacement fraction of every layer's patch at one checkpoint, with its null and ceiling:
    {"source": ..., "target": ..., "layers": {layer: ...}}, each a `summary`; source and target (the
    unpatched samples at c1 and at c2) also with their accuracy at their own conditions."""
    sources, targets = pairs
    source_images, outputs = record_outputs(model, cfg, sources, layers)
    target_images = sample(model, scoring_sampler(cfg), targets, cfg.data.image_size, seed=cfg.scoring.seed)
    result = {"layers": {}}
    for name, images, labels in (("source", source_images, sources), ("target", target_images, targets)):
        positions, outcome = located_positions(images, labels, cfg)
        result[name] = {**summary(displacement_fractions(positions, sources, targets)),
                        "accuracy": float(np.mean(outcome == ACCURATE))}
    for layer in layers:
        positions, _ = located_positions(patched_sample(model, cfg, targets, layer, outputs[layer]), targets, cfg)
        result["layers"][layer] = summary(displacement_fractions(positions, sources, targets))
    return result


def patch_checkpoints(run: RunDir, cfg: Config, steps: list[int], layers: list[str], count: int = PAIRS,
                      device: str = "cpu"):
    """Patch every layer at the checkpoints `steps` (the same `count` pairs throughout), adding each
    checkpoint's result to RUN_DIR/patching.json as it is done and yielding (step, result). A file
    made with other pairs, sampler or layers is replaced. The caller holds the run's lock."""
    pairs = condition_pairs(cfg, count)
    header = {"sampler": cfg.scoring.sampler, "sampler_steps": cfg.scoring.sampler_steps, "eta": cfg.scoring.eta,
              "seed": cfg.scoring.seed, "weights": cfg.scoring.weights, "layers": list(layers),
              "sources": pairs[0].tolist(), "targets": pairs[1].tolist()}
    kept = read_json(run.patching_path) if run.patching_path.exists() else {}
    record = kept if {k: kept.get(k) for k in header} == header else {**header, "checkpoints": {}}
    for step in steps:
        model = load_model(run, step, ema=cfg.scoring.weights == "ema", device=device)
        result = patch_checkpoint(model, cfg, layers, pairs)
        record["checkpoints"][str(step)] = result
        record["checkpoints"] = dict(sorted(record["checkpoints"].items(), key=lambda item: int(item[0])))
        atomic_write(run.patching_path, json.dumps(record, indent=1).encode())
        yield step, result
