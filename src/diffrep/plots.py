"""Figures written into run and sweep directories: matplotlib `Figure` objects, never pyplot, so that
importing diffrep leaves the user's matplotlib backend and open figures as they were."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .rundir import atomic_write


def _save(fig: Figure, path: Path, dpi: int = 100) -> None:
    """Render in memory, then write like every other file of a run (`atomic_write`): never torn,
    and a full disk leaves the old picture and no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png", bbox_inches="tight")  # legends outside the axes included
    atomic_write(path, buffer.getvalue())


def save_sample_grid(images, conditions, path: Path, title: str, latent_size: float, image_size: int) -> None:
    """A grid of generated images, each titled with its requested (x, y), marked with a red cross."""
    images = np.asarray(images)[:, 0]
    conditions = np.asarray(conditions)
    n = len(images)
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.6 * cols, 1.75 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
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
    _save(fig, path, dpi=100)
    

# Okabe and Ito's colour-blind-safe palette: accurate blue, wrong orange, several reddish purple, none grey.
OUTCOME_COLOURS = {"several": "#cc79a7", "none": "#999999", "wrong": "#e69f00", "accurate": "#0072b2"}


def save_score_curve(records: list[dict], group: str, path: Path, title: str) -> None:
    """Outcome fractions over training (stacked) for one evaluation group, from load_scores records."""
    steps = np.array([r["step"] for r in records])
    fracs = {k: np.array([r["groups"][group][f"frac_{k}"] for r in records]) for k in OUTCOME_COLOURS}
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    ax.stackplot(steps, *fracs.values(), labels=[f"{k}" for k in fracs], colors=list(OUTCOME_COLOURS.values()), alpha=0.85)
    ax.set_xscale("symlog", linthresh=max(1, steps[steps > 0].min()) if (steps > 0).any() else 1)
    if steps.max() > steps.min():  # one scored checkpoint: matplotlib pads the axis itself
        ax.set_xlim(steps.min(), steps.max())
    ax.set_ylim(0, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"fraction of samples ({group})")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="outcome")
    fig.tight_layout()
    _save(fig, path, dpi=110)
    

def save_umap_grid(panels: list[tuple[int, str, np.ndarray]], conditions: np.ndarray, path: Path, title: str) -> None:
    """3D UMAP embeddings over checkpoints, shown as their first two coordinates; one column per
    (step, phase, embedding [K, 3]), coloured by x (top row) and by y (bottom row)."""
    cols = len(panels)
    fig = Figure(figsize=(2.1 * cols, 4.4))
    axes = fig.subplots(2, cols, squeeze=False)
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
    _save(fig, path, dpi=100)
    

PHASE_COLOURS = {"A": "#f2f2f2", "B": "#fde9c9", "C": "#d9f2d9"}


def save_metric_curves(rows: list[dict], probes: list[dict], layer: str, keys: list[str], path: Path, title: str) -> None:
    """Representation metrics of one layer over training, each in its own panel, on the phase timeline."""
    steps = np.array([r["step"] for r in probes])
    fig = Figure(figsize=(6, 1.5 * len(keys) + 0.6))
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        values = [r["layers"][layer].get(key) for r in probes]
        ax.plot(steps, [np.nan if v is None else v for v in values], marker="o", markersize=3)
        ax.set_ylabel(key, fontsize=8)
        for left, right, phase in zip([r["step"] for r in rows], [r["step"] for r in rows[1:]] + [steps.max()], [r["phase"] for r in rows]):
            if phase in PHASE_COLOURS:  # an unlabelled checkpoint (phases.explain) has no background
                ax.axvspan(left, right, color=PHASE_COLOURS[phase], zorder=0)
    ax = axes[-1, 0]
    ax.set_xscale("symlog", linthresh=max(1, steps[steps > 0].min()) if (steps > 0).any() else 1)
    ax.set_xlabel("training step (background: phase A grey, B orange, C green)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=100)
    

def save_story(rows: list[dict], phase_cfg, path: Path, title: str) -> None:
    """Generation and representation of one run on one step axis, phases as background: the outcome
    fractions (stacked) above, condition_share and order_gain with the rule's thresholds below, so
    that the lag between the ordered code and accurate generation shows. rows: phases.analyze_run's."""
    steps = np.array([r["step"] for r in rows], dtype=float)
    fig = Figure(figsize=(7, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True)
    scored = [r for r in rows if r.get("fractions")]
    if scored:
        s = np.array([r["step"] for r in scored], dtype=float)
        fracs = {k: np.array([r["fractions"][k] for r in scored]) for k in OUTCOME_COLOURS}
        top.stackplot(s, *fracs.values(), labels=list(fracs), colors=list(OUTCOME_COLOURS.values()), alpha=0.85)
        top.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="outcome")
    top.set_ylim(0, 1)
    top.set_ylabel("fraction of samples", fontsize=8)
    for key, label in (("condition_share", "condition_share"), ("order_gain", "order gain (knn_overlap)")):
        bottom.plot(steps, [np.nan if r.get(key) is None else r[key] for r in rows], marker="o", markersize=2.5, label=label)
    bottom.axhline(phase_cfg.min_condition_share, color="C0", linestyle=":", linewidth=1)
    bottom.axhline(phase_cfg.min_order_gain, color="C1", linestyle="--", linewidth=1)
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_ylabel("representation", fontsize=8)
    bottom.set_xlabel("training step (background: phase A grey, B orange, C green; lines: the rule's thresholds)",
                      fontsize=8)
    bottom.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    for ax in (top, bottom):
        for left, right, phase in zip(steps, list(steps[1:]) + [steps.max()], [r["phase"] for r in rows]):
            if phase in PHASE_COLOURS:
                ax.axvspan(left, right, color=PHASE_COLOURS[phase], zorder=0)
        if steps.max() > steps.min():
            ax.set_xlim(steps.min(), steps.max())
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=100)
    

def save_setting_curves(groups: list[dict], key: str, path: Path, title: str) -> None:
    """One curve per setting of `key` over steps: the mean over seeds, with a min-max band.
    groups: [{"label": str, "runs": [[(step, value), ...] per run]}]."""
    save_panels(path, title, [lambda ax: plot_setting_curves(ax, groups, key)], size=(7, 3.6))


def plot_setting_curves(ax, groups: list[dict], ylabel: str, log_x: bool = True) -> None:
    """`save_setting_curves` on one axes: per setting, the mean over seeds with a min-max band
    (steps on a symlog axis, or a linear one)."""
    for g in groups:
        common = sorted(set.intersection(*(set(s for s, _ in run) for run in g["runs"]))) if g["runs"] else []
        if not common:
            continue
        values = np.array([[dict(run)[s] for s in common] for run in g["runs"]], dtype=float)
        line, = ax.plot(common, values.mean(0), label=f"{g['label']} (n={len(values)})")
        ax.fill_between(common, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    if log_x:
        ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel, fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_seed_bands(ax, series: list[dict], xlabel: str, ylabel: str, log_x: bool = False) -> None:
    """A statistic against a setting, one line per series: the mean over seeds of the defined values
    with a min-max band. A point that only some seeds reached is labelled k/n; an x that no seed
    reached is marked with a triangle at the top ("not reached").
    series: [{"label": str, "x": [x, ...], "values": [[value or None per seed] per x]}]."""
    for s in series:
        points = [(x, [v for v in values if v is not None], len(values)) for x, values in zip(s["x"], s["values"])]
        reached = [(x, defined, n) for x, defined, n in points if defined]
        xs = [x for x, _, _ in reached]
        means = [float(np.mean(defined)) for _, defined, _ in reached]
        line, = ax.plot(xs, means, marker="o", markersize=3, label=s["label"])
        ax.fill_between(xs, [min(d) for _, d, _ in reached], [max(d) for _, d, _ in reached],
                        color=line.get_color(), alpha=0.2)
        for (x, defined, n), mean in zip(reached, means):
            if len(defined) < n:
                ax.annotate(f"{len(defined)}/{n}", (x, mean), fontsize=6, textcoords="offset points", xytext=(3, 3))
        for x, defined, _ in points:
            if not defined:
                ax.plot([x], [0.97], marker="v", color=line.get_color(), transform=ax.get_xaxis_transform(), clip_on=False)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if any(s["label"] for s in series):
        ax.legend(fontsize=7)


def plot_phase_timelines(ax, timelines: list[tuple[str, list[tuple[int, str]]]], log_x: bool = True,
                         marks: list[int | None] | None = None, mark_label: str = "") -> None:
    """One row per run: its checkpoints' phases as coloured spans (PHASE_COLOURS), each phase from its
    checkpoint to the next, so the phase boundaries of every seed line up on one step axis; with
    `marks`, one step per run drawn as a black triangle (e.g. where generation turned accurate).
    timelines: [(label, [(step, phase), ...] by step)]."""
    edge = {"A": "#999999", "B": "#e8a33d", "C": "#4caf50"}
    for row, (label, points) in enumerate(timelines):
        for (step, phase), (following, _) in zip(points, points[1:] + [(points[-1][0], None)]):
            if phase in PHASE_COLOURS:
                ax.barh(row, max(following - step, 1), left=step, height=0.6, color=PHASE_COLOURS[phase],
                        edgecolor=edge[phase], linewidth=0.5)
    marked = [(row, step) for row, step in enumerate(marks or []) if step is not None]
    for i, (row, step) in enumerate(marked):
        ax.plot([step], [row], marker="v", color="black", markersize=6, label=mark_label if i == 0 else None)
    ax.set_yticks(range(len(timelines)), [label for label, _ in timelines], fontsize=7)
    if log_x:
        ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("training step (grey A, orange B, green C)", fontsize=8)
    if marked and mark_label:
        ax.legend(fontsize=7, loc="upper left")


def save_panels(path: Path, title: str, drawers: list, size: tuple[float, float] | None = None) -> None:
    """One figure of side-by-side panels, each drawn by a function of its matplotlib axes."""
    fig = Figure(figsize=size or (4.6 * len(drawers), 3.6))
    axes = fig.subplots(1, len(drawers), squeeze=False)
    for ax, draw in zip(axes[0], drawers):
        draw(ax)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=100)
    