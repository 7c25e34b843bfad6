"""The density experiment: time to phase C and to 90% accuracy against the increment of the lattice."""

from __future__ import annotations

from ..plots import plot_seed_bands, plot_setting_curves
from .common import (ACCURACY_KEY, ACCURACY_THRESHOLD, Context, epochs, first_rows, per_setting, save_figure, series,
                     setting_curves, timing_statistics)
from .stats import overall, trend_test, trend_verdict


def analyze_density(rows: list[dict], ctx: Context) -> dict:
    """Time to phase C and to 90% accuracy against the increment dx = dy (claim 3, docs/conventions.md).

    Two predictions, each decided by `stats.trend_verdict` on the Spearman rho of the increment with
    the time to phase C over all runs (never reached: ranked last), predicted > 0 (a smaller
    increment, a denser lattice, reaches C sooner): in epochs (passes over the training set, the
    papers' unit) and in training steps (a denser lattice has more images per epoch, so in steps
    the claim is the stronger one). The verdict is the overall one of the two (`stats.overall`).
    The trends of the time to 90% accuracy are reported beside them, without a verdict.
    """
    increment = lambda row: float(row["data.dx"])  # noqa: E731
    label = lambda row: f"increment {increment(row):g}"  # noqa: E731
    stats, to_c, to_acc = timing_statistics(rows, ctx, label)
    firsts = first_rows(rows)
    runs = list(firsts)
    xs = [increment(firsts[r]) for r in runs]
    to_c_epochs = epochs(rows, to_c)
    stats["epochs_to_phase_C"] = {"description": "first checkpoint labelled phase C, in passes over the training set",
                                  "per_setting": per_setting(rows, to_c_epochs, label)}
    tests = {}
    for name, times in (("epochs_to_phase_C", to_c_epochs), ("steps_to_phase_C", to_c),
                        (f"epochs_to_accuracy_{ACCURACY_THRESHOLD}", epochs(rows, to_acc)),
                        (f"steps_to_accuracy_{ACCURACY_THRESHOLD}", to_acc)):
        tests[name] = stats[f"trend_{name}"] = {
            "description": f"Spearman rho of the increment with the {name.replace('_', ' ')} (never reached: ranked "
                           "last), permutation p-values and a bootstrap interval over runs",
            **trend_test(xs, [times[r] for r in runs])}
    predictions = [
        {"name": unit, "prediction": f"a denser lattice reaches phase C in fewer {unit} (rho of increment with {unit} > 0)",
         **trend_verdict(tests[f"{unit}_to_phase_C"], +1, "phase C")}
        for unit in ("epochs", "steps")]
    x_of = lambda e: increment(firsts[e["runs"][0]])  # noqa: E731
    figures = save_figure(ctx, "density: time to phase C and to 90% accuracy against the increment (band: seeds)", [
        lambda ax: plot_seed_bands(ax, [series(stats["steps_to_phase_C"]["per_setting"], x_of, "phase C"),
                                        series(stats[f"steps_to_accuracy_{ACCURACY_THRESHOLD}"]["per_setting"], x_of,
                                               f"accuracy {ACCURACY_THRESHOLD}")],
                                   "increment dx = dy (pixels)", "training step"),
        lambda ax: plot_seed_bands(ax, [series(stats["epochs_to_phase_C"]["per_setting"], x_of, "phase C")],
                                   "increment dx = dy (pixels)", "epochs"),
        lambda ax: plot_setting_curves(ax, setting_curves(rows, ACCURACY_KEY, label), "in-distribution accuracy"),
    ])
    words = "; ".join(f"in {p['name']}: {p['verdict']} ({p['reason']})" for p in predictions)
    return {"statistics": stats, "predictions": predictions, "verdict": f"{overall(predictions)}: {words}",
            "figures": figures}
