"""Figures written into run directories (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_tiled(images, path: Path, cols: int = 8) -> None:
    """Images [B, 1, N, N] in [-1, 1] tiled into one grey PNG, 1-pixel gaps: fast, for every checkpoint."""
    images = np.asarray(images)[:, 0]
    n, size = len(images), images.shape[-1]
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (size + 1) + 1, cols * (size + 1) + 1), 0.0)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        canvas[1 + r * (size + 1) : (r + 1) * (size + 1), 1 + c * (size + 1) : (c + 1) * (size + 1)] = img
    _atomic_savefig(path, lambda f: plt.imsave(f, canvas, cmap="gray", vmin=-1, vmax=1, format="png"))


def _atomic_savefig(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


def save_sample_grid(images, conditions, path: Path, title: str, latent_size: float, image_size: int) -> None:
    """A grid of generated images, each titled with its requested (x, y), marked with a red cross."""
    images = np.asarray(images)[:, 0]
    conditions = np.asarray(conditions)
    n = len(images)
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows + 0.4), squeeze=False)
    offset = (latent_size - image_size) / 2
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, (x, y) in zip(axes.flat, images, conditions):
        # extent maps pixel edges to label coordinates, so the marker sits at the requested (x, y).
        ax.imshow(img, cmap="gray", vmin=-1, vmax=1, extent=(offset, offset + image_size, offset + image_size, offset))
        ax.plot([x], [y], marker="+", color="red", markersize=8, markeredgewidth=1)
        ax.set_xlim(offset, offset + image_size)
        ax.set_ylim(offset + image_size, offset)
        ax.set_title(f"({x:.1f}, {y:.1f})", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _atomic_savefig(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


OUTCOME_COLOURS = {"several": "#d62728", "none": "#7f7f7f", "wrong": "#ff7f0e", "accurate": "#2ca02c"}


def save_score_curve(records: list[dict], group: str, path: Path, title: str) -> None:
    """Outcome fractions over training (stacked) for one evaluation group, from load_scores records."""
    steps = np.array([r["step"] for r in records])
    fracs = {k: np.array([r["groups"][group][f"frac_{k}"] for r in records]) for k in OUTCOME_COLOURS}
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.stackplot(steps, *fracs.values(), labels=[f"{k}" for k in fracs], colors=list(OUTCOME_COLOURS.values()), alpha=0.85)
    ax.set_xscale("symlog", linthresh=max(1, steps[steps > 0].min()) if (steps > 0).any() else 1)
    ax.set_xlim(steps.min(), steps.max())
    ax.set_ylim(0, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"fraction of samples ({group})")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="outcome")
    fig.tight_layout()
    _atomic_savefig(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def save_umap_grid(panels: list[tuple[int, str, np.ndarray]], conditions: np.ndarray, path: Path, title: str) -> None:
    """3D UMAP embeddings over checkpoints, shown as their first two coordinates; one column per
    (step, phase, embedding [K, 3]), coloured by x (top row) and by y (bottom row)."""
    cols = len(panels)
    fig, axes = plt.subplots(2, cols, figsize=(2.1 * cols, 4.4), squeeze=False)
    for c, (step, phase, emb) in enumerate(panels):
        for r, axis in enumerate("xy"):
            ax = axes[r, c]
            ax.scatter(emb[:, 0], emb[:, 1], c=conditions[:, r], cmap="viridis", s=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"step {step}  phase {phase}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"coloured by {axis}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _atomic_savefig(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


PHASE_COLOURS = {"A": "#f2f2f2", "B": "#fde9c9", "C": "#d9f2d9"}


def save_metric_curves(rows: list[dict], probes: list[dict], layer: str, keys: list[str], path: Path, title: str) -> None:
    """Representation metrics of one layer over training, each in its own panel, on the phase timeline."""
    steps = np.array([r["step"] for r in probes])
    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 1.5 * len(keys) + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        values = [r["layers"][layer].get(key) for r in probes]
        ax.plot(steps, [np.nan if v is None else v for v in values], marker="o", markersize=3)
        ax.set_ylabel(key, fontsize=8)
        for left, right, phase in zip([r["step"] for r in rows], [r["step"] for r in rows[1:]] + [steps.max()], [r["phase"] for r in rows]):
            ax.axvspan(left, right, color=PHASE_COLOURS[phase], zorder=0)
    ax = axes[-1, 0]
    ax.set_xscale("symlog", linthresh=max(1, steps[steps > 0].min()) if (steps > 0).any() else 1)
    ax.set_xlabel("training step (background: phase A grey, B orange, C green)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _atomic_savefig(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


def save_setting_curves(groups: list[dict], key: str, path: Path, title: str) -> None:
    """One curve per setting of `key` over steps: the mean over seeds, with a min-max band.
    groups: [{"label": str, "runs": [[(step, value), ...] per run]}]."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for g in groups:
        common = sorted(set.intersection(*(set(s for s, _ in run) for run in g["runs"]))) if g["runs"] else []
        if not common:
            continue
        values = np.array([[dict(run)[s] for s in common] for run in g["runs"]], dtype=float)
        line, = ax.plot(common, values.mean(0), label=f"{g['label']} (n={len(values)})")
        ax.fill_between(common, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("training step")
    ax.set_ylabel(key)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _atomic_savefig(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)
