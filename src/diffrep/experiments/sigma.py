"""The sigma experiment: time to phase C over sigma x increment, against the overlap of neighbouring bumps."""

from __future__ import annotations

from ..percolation import bump_overlap
from ..plots import plot_seed_bands, plot_setting_curves
from .common import (ACCURACY_KEY, NOT_REACHED, Context, censored_rank_correlation, common_time, first_rows,
                     per_setting, save_figure, series, setting_curves, timing_statistics)

def neighbour_overlap(row: dict) -> float:
    """Overlap (cosine similarity, percolation.bump_overlap) of two bumps one lattice step apart along x."""
    sigma = float(row["data.sigma"])
    return float(bump_overlap(float(row["data.dx"]), 0.0, sigma, sigma))


def analyze_sigma(rows: list[dict], ctx: Context) -> dict:
    """Time to phase C over sigma x increment, against the overlap of neighbouring bumps.

    Verdict: the setting (increment, sigma, or neighbour overlap) with the largest |Spearman rho|
    against the steps to phase C (never reached: ranked last) is what the timing follows; sigma
    "matters less than the increment" (claim 3, docs/conventions.md) when its |rho| is smaller. 'No difference'
    when every run reached phase C at the same checkpoint, NOT_REACHED when none did.
    """
    firsts = first_rows(rows)
    label = lambda r: f"increment {float(r['data.dx']):g}, sigma {float(r['data.sigma']):g}"  # noqa: E731
    stats, to_c, _ = timing_statistics(rows, ctx, label)
    stats["neighbour_overlap"] = {"description": "overlap of two bumps one lattice step apart, exp(-d^2 / (4 sigma^2))",
                                  "per_setting": per_setting(rows, {r: neighbour_overlap(row) for r, row in firsts.items()}, label)}
    runs = list(firsts)
    factors = {"increment": lambda r: float(r["data.dx"]), "sigma": lambda r: float(r["data.sigma"]),
               "neighbour overlap": neighbour_overlap}
    correlations = {name: censored_rank_correlation([f(firsts[r]) for r in runs], [to_c[r] for r in runs])
                    for name, f in factors.items()}
    stats["rank_correlation_steps_to_phase_C"] = {
        "description": "Spearman rho of each factor with the steps to phase C (never reached: ranked last)",
        "value": {name: c["rho"] for name, c in correlations.items()},
        "n": len(runs), "n_reached": correlations["sigma"]["n_reached"]}
    defined = {name: c["rho"] for name, c in correlations.items() if c["rho"] is not None}
    if not any(to_c[r] is not None for r in runs):
        verdict = f"{NOT_REACHED}: no run reached phase C"
    elif (same := common_time([to_c[r] for r in runs])) is not None:
        verdict = f"no difference to follow: all {len(runs)} runs reach phase C at step {same:g}"
    elif not defined:
        verdict = "no factor varies enough to correlate with the steps to phase C"
    else:
        best = max(defined, key=lambda k: abs(defined[k]))
        verdict = f"the steps to phase C follow the {best} most closely (Spearman rho {defined[best]:.2f})"
        if "sigma" in defined and "increment" in defined:
            less = abs(defined["sigma"]) < abs(defined["increment"])
            verdict += (f"; sigma matters {'less' if less else 'as much or more'} than the increment "
                        f"(|rho| {abs(defined['sigma']):.2f} vs {abs(defined['increment']):.2f}, "
                        f"{'as' if less else 'against'} the paper)")
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
    return {"statistics": stats, "verdict": verdict, "figures": figures}
