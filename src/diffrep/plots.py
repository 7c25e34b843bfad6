"""Figures written into run directories (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    tmp.replace(path)
