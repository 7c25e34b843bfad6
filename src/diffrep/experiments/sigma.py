"""The sigma experiment: time to phase C over sigma x increment, against the overlap of neighbouring bumps."""

from __future__ import annotations

import numpy as np

from ..percolation import bump_overlap
from ..plots import plot_seed_bands, plot_setting_curves
from .common import ACCURACY_KEY, Context, first_rows, per_setting, save_figure, series, setting_curves, timing_statistics
from .stats import (CONTRADICTED, MIN_MEASURED_RUNS, NOT_MEASURABLE, REPRODUCED, bootstrap_over_runs, censored_spearman,
                    trend_test, verdict)


def neighbour_overlap(row: dict) -> float:
    """Overlap (cosine similarity, percolation.bump_overlap) of two bumps one lattice step apart along x."""
    sigma = float(row["data.sigma"])
    return float(bump_overlap(float(row["data.dx"]), 0.0, sigma, sigma))


def analyze_sigma(rows: list[dict], ctx: Context) -> dict:
    """Time to phase C over sigma x increment, against the overlap of neighbouring bumps.

    Statistics: `stats.trend_test` of each factor (increment, sigma, neighbour overlap) with the
    steps to phase C (never reached: ranked last). Prediction (claim 3, docs/conventions.md): sigma
    matters less than the increment, |rho(increment)| - |rho(sigma)| > 0. Reproduced when the 95%
    bootstrap interval of that difference (resampling runs) lies above 0, contradicted when it lies
    below, else not measurable; not measurable also when fewer than MIN_MEASURED_RUNS runs reached
    phase C.
    """
    firsts = first_rows(rows)
    label = lambda r: f"increment {float(r['data.dx']):g}, sigma {float(r['data.sigma']):g}"  # noqa: E731
    stats, to_c, _ = timing_statistics(rows, ctx, label)
    stats["neighbour_overlap"] = {"description": "overlap of two bumps one lattice step apart, exp(-d^2 / (4 sigma^2))",
                                  "per_setting": per_setting(rows, {r: neighbour_overlap(row) for r, row in firsts.items()}, label)}
    runs = list(firsts)
    times = [to_c[r] for r in runs]
    factors = {"increment": np.array([float(firsts[r]["data.dx"]) for r in runs]),
               "sigma": np.array([float(firsts[r]["data.sigma"]) for r in runs]),
               "neighbour overlap": np.array([neighbour_overlap(firsts[r]) for r in runs])}
    for name, xs in factors.items():
        stats[f"trend_steps_to_phase_C_{name.replace(' ', '_')}"] = {
            "description": f"Spearman rho of the {name} with the steps to phase C (never reached: ranked last)",
            **trend_test(xs, times)}

    def difference(picks=None):  # |rho(increment)| - |rho(sigma)|, over resampled runs with picks
        return np.abs(censored_spearman(factors["increment"], times, picks)) - \
            np.abs(censored_spearman(factors["sigma"], times, picks))

    reached = sum(t is not None for t in times)
    interval = bootstrap_over_runs(difference, len(runs)) if len(runs) >= 3 else None
    point = float(difference()) if len(runs) >= 3 else float("nan")
    stats["increment_minus_sigma_abs_rho"] = {
        "description": "|rho(increment, steps to C)| - |rho(sigma, steps to C)| and its 95% bootstrap interval over runs",
        "value": None if np.isnan(point) else float(point), "interval": interval, "n": len(runs), "n_reached": reached}
    if reached < MIN_MEASURED_RUNS:
        decided = verdict(NOT_MEASURABLE, f"{reached} of {len(runs)} runs reached phase C (fewer than {MIN_MEASURED_RUNS})")
    elif interval is None or np.isnan(point):
        decided = verdict(NOT_MEASURABLE, "the steps to phase C do not vary with either factor: nothing to compare")
    else:
        text = (f"|rho(increment)| - |rho(sigma)| = {point:.2f}, 95% interval [{interval[0]:.2f}, {interval[1]:.2f}], "
                f"{len(runs)} runs, {reached} reached phase C")
        decided = verdict(REPRODUCED if interval[0] > 0 else CONTRADICTED if interval[1] < 0 else NOT_MEASURABLE, text)
    predictions = [{"name": "sigma matters less", "prediction": "the steps to phase C follow the increment more "
                                                                "closely than sigma (|rho| larger)", **decided}]
    increments = sorted({float(r["data.dx"]) for r in firsts.values()})

    def by_increment(x_of, xlabel):
        def draw(ax):
            plot_seed_bands(ax, [series([e for e in stats["steps_to_phase_C"]["per_setting"]
                                         if float(firsts[e["runs"][0]]["data.dx"]) == inc],
                                        lambda e: x_of(firsts[e["runs"][0]]), f"increment {inc:g}")
                                 for inc in increments], xlabel, "steps to phase C")
        return draw

    figures = save_figure(ctx, "sigma: steps to phase C against sigma and against neighbour overlap (band: seeds)", [
        by_increment(lambda r: float(r["data.sigma"]), "sigma (pixels)"),
        by_increment(neighbour_overlap, "overlap of neighbouring bumps"),
        lambda ax: plot_setting_curves(ax, setting_curves(rows, ACCURACY_KEY, label), "in-distribution accuracy"),
    ])
    return {"statistics": stats, "predictions": predictions,
            "verdict": f"{decided['verdict']}: {decided['reason']}", "figures": figures}
