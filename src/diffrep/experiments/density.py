"""The density experiment: time to phase C and to 90% accuracy against the increment of the lattice."""

from __future__ import annotations

from ..plots import plot_seed_bands, plot_setting_curves
from .common import (ACCURACY_KEY, ACCURACY_THRESHOLD, NOT_REACHED, Context, censored_rank_correlation, common_time,
                     first_rows, save_figure, series, setting_curves, timing_statistics)

TREND_MIN_RHO = 0.5  # |Spearman rho| at least this for a trend to count

def analyze_density(rows: list[dict], ctx: Context) -> dict:
    """Time to phase C and to 90% accuracy against the increment dx = dy (claim 3, docs/conventions.md).

    Verdict, from the Spearman rho of the increment with the steps to phase C over all runs (never
    reached: ranked last): rho >= TREND_MIN_RHO 'denser is faster', <= -TREND_MIN_RHO 'denser is
    slower', else 'no clear trend'; 'no difference' when every run reached it at the same checkpoint,
    NOT_REACHED when no run reached phase C. The same for 90%
    accuracy is reported beside it.
    """
    increment = lambda row: float(row["data.dx"])  # noqa: E731
    stats, to_c, to_acc = timing_statistics(rows, ctx, lambda row: f"increment {increment(row):g}")
    firsts = first_rows(rows)
    runs = list(firsts)
    xs = [increment(firsts[r]) for r in runs]
    words = {1: "denser is faster (as the paper says)", -1: "denser is slower (against the paper)", 0: "no clear trend"}
    parts = []
    for name, times in (("phase_C", to_c), (f"accuracy_{ACCURACY_THRESHOLD}", to_acc)):
        t = stats[f"trend_steps_to_{name}"] = {
            "description": f"Spearman rho of the increment with the steps to {name} (never reached: ranked last)",
            **censored_rank_correlation(xs, [times[r] for r in runs])}
        if t["rho"] is None:
            same = common_time([times[r] for r in runs])
            parts.append(f"steps to {name}: " + (f"no difference (all {t['n']} runs at step {same:g})" if same is not None
                                                 else NOT_REACHED if t["n_reached"] == 0
                                                 else "undefined (fewer than 3 runs or one increment)"))
            continue
        sign = 1 if t["rho"] >= TREND_MIN_RHO else -1 if t["rho"] <= -TREND_MIN_RHO else 0
        parts.append(f"steps to {name}: {words[sign]} (Spearman rho {t['rho']:.2f} of increment with steps, "
                     f"{t['n']} runs, {t['n_reached']} reached)")
    x_of = lambda e: increment(firsts[e["runs"][0]])  # noqa: E731
    figures = save_figure(ctx, "density: time to phase C and to 90% accuracy against the increment (band: seeds)", [
        lambda ax: plot_seed_bands(ax, [series(stats["steps_to_phase_C"]["per_setting"], x_of, "phase C"),
                                        series(stats[f"steps_to_accuracy_{ACCURACY_THRESHOLD}"]["per_setting"], x_of,
                                               f"accuracy {ACCURACY_THRESHOLD}")],
                                   "increment dx = dy (pixels)", "training step"),
        lambda ax: plot_setting_curves(ax, setting_curves(rows, ACCURACY_KEY, lambda r: f"increment {increment(r):g}"),
                                       "in-distribution accuracy"),
    ])
    return {"statistics": stats, "verdict": "; ".join(parts), "figures": figures}
