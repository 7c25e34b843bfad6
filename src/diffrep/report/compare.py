"""The report of several runs side by side: their curves overlaid on one step axis, their phases as
timelines, and the settings in which they differ. Reads the aggregated rows of the runs only
(`sweep.tables.aggregate`), so that any runs compare, from one sweep or from several."""

from __future__ import annotations

from pathlib import Path

from ..plots import plot_phase_timelines, save_panels
from ..rundir import atomic_write
from ..sweep.tables import curve, time_to, varying_keys
from .page import escape, figure, page

ACCURACY = "score.train.accuracy"


def run_labels(rows: list[dict]) -> dict[str, str]:
    """Each run's folder name and the settings in which the runs differ."""
    differs = varying_keys(rows)
    labels = {}
    for row in rows:
        if row["run"] not in labels:
            setting = ", ".join(f"{k}={row[k]}" for k in differs)
            labels[row["run"]] = row["name"] + (f" ({setting})" if setting else "")
    return labels


def write_comparison_report(rows: list[dict], out: Path, layer: str = "layer4") -> tuple[Path, list[str]]:
    """Overlay the runs of `rows` (accuracy, the phase rule's numbers, the loss; phases as timelines
    with the step where accuracy first reached 0.5) into the page `out` and its pictures beside it
    (OUT_STEM_curves.png, OUT_STEM_phases.png). Returns the page's path and one summary line per run."""
    out = Path(out)
    labels = run_labels(rows)
    runs = list(labels)
    panels = [(ACCURACY, "in-distribution accuracy"), (f"probe.{layer}.condition_share", f"condition_share ({layer})"),
              (f"probe.{layer}.knn_overlap", f"knn_overlap ({layer})"), ("loss", "training loss")]

    def overlay(key, ylabel, legend=False):
        def draw(ax):
            for run in runs:
                points = curve(rows, run, key)
                if points:
                    ax.plot(*zip(*points), marker="o", markersize=2, label=labels[run])
            ax.set_xscale("symlog", linthresh=10)
            ax.set_xlabel("training step")
            ax.set_ylabel(ylabel, fontsize=8)
            if legend and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
        return draw

    drawers = [overlay(key, ylabel, legend=k == 0) for k, (key, ylabel) in enumerate(panels)]
    curves = out.parent / f"{out.stem}_curves.png"
    save_panels(curves, f"{len(runs)} runs overlaid", drawers, size=(4.2 * len(drawers), 4.0))
    accurate = time_to(rows, ACCURACY, 0.5)
    to_c = time_to(rows, f"phase.{layer}", "C")
    probed = [run for run in runs if any(r["run"] == run and r.get(f"phase.{layer}") for r in rows)]
    timelines = [(labels[run], sorted((int(r["step"]), r[f"phase.{layer}"]) for r in rows
                                      if r["run"] == run and r.get(f"phase.{layer}"))) for run in probed]
    phases = out.parent / f"{out.stem}_phases.png"
    if probed:
        save_panels(phases, f"phases of {layer} per run (triangle: accuracy first >= 0.5)",
                    [lambda ax: plot_phase_timelines(ax, timelines, marks=[accurate.get(run) for run in probed],
                                                     mark_label="accuracy >= 0.5")],
                    size=(10, 1.0 + 0.35 * len(probed)))
    lines = []
    for run in runs:
        last = curve(rows, run, ACCURACY)
        final = f"accuracy {last[-1][1]:.3f} at step {last[-1][0]}" if last else "not scored"
        lines.append(f"{labels[run]}: {final}; phase C from {to_c.get(run)}, accuracy >= 0.5 from {accurate.get(run)}")
    body = ("<h2>Runs</h2><ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"
            + figure(curves, "Curves overlaid", "Accuracy, the phase rule's inputs and the loss of every run on one "
                     "step axis.")
            + (figure(phases, "Phases per run", "Each run's phase at every probed checkpoint (A grey, B orange, "
                      "C green); the triangle marks where accuracy first reached 0.5.") if probed else
               "<p>No run was probed: no phases to show.</p>"))
    atomic_write(out, page(f"diffrep: {len(runs)} runs compared", body).encode())
    return out, lines
