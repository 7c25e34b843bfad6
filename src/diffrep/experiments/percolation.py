"""The percolation experiment (no training): the largest cluster of overlapping bumps against lambda."""

from __future__ import annotations

import numpy as np

from ..percolation import cluster_row, onset
from ..plots import plot_seed_bands
from .common import NOT_REACHED, Context, fmt, save_figure, seed_stats, series

def percolation_rows(ctx: Context) -> list[dict]:
    """One row per sigma, overlap threshold, lambda and subsample seed: `percolation.cluster_row`."""
    p = ctx.params
    rows = []
    for sigma in p["sigmas"]:
        for threshold in p["thresholds"]:
            for lam in p["lambdas"]:
                for seed in p["seeds"]:
                    data = ctx.base.with_overrides({"data.sigma": sigma, "data.keep_fraction": lam,
                                                    "data.subsample_seed": seed}).data
                    rows.append({"data.sigma": sigma, "threshold": threshold, "data.keep_fraction": lam,
                                 "data.subsample_seed": seed, **cluster_row(data, threshold)})
    return rows


def analyze_percolation(rows: list[dict], ctx: Context) -> dict:
    """Largest cluster against lambda for each sigma and overlap threshold; its onset.

    Verdict: per threshold, whether the onset lambda (`percolation.onset` of the mean share over
    subsample seeds) falls as sigma grows (never rises where defined), with the onsets; NOT_REACHED
    for a sigma whose cluster never holds half of the kept points.
    """
    entries, onsets = [], []
    for sigma in ctx.params["sigmas"]:
        for threshold in ctx.params["thresholds"]:
            mine = [r for r in rows if r["data.sigma"] == sigma and r["threshold"] == threshold]
            lambdas = sorted({r["data.keep_fraction"] for r in mine})
            shares = []
            for lam in lambdas:
                at = [r for r in mine if r["data.keep_fraction"] == lam]
                entries.append({"label": f"sigma {sigma:g}, overlap >= {threshold:g}, lambda {lam:g}",
                                "setting": {"data.sigma": sigma, "threshold": threshold, "data.keep_fraction": lam},
                                "runs": [], **seed_stats([r["largest_cluster_fraction"] for r in at])})
                shares.append(float(np.mean([r["largest_cluster_share"] for r in at])))
            onsets.append({"sigma": sigma, "threshold": threshold, "onset": onset(lambdas, shares)})
    stats = {"largest_cluster_fraction": {"description": "largest cluster / all lattice points, over subsample seeds",
                                          "per_setting": entries},
             "onset_lambda": {"description": "smallest lambda whose largest cluster holds half of the kept points",
                              "value": onsets}}
    parts = []
    for threshold in ctx.params["thresholds"]:
        mine = [o for o in onsets if o["threshold"] == threshold]
        defined = [o["onset"] for o in mine if o["onset"] is not None]
        trend = ("falls as sigma grows" if len(defined) > 1 and all(a >= b for a, b in zip(defined, defined[1:]))
                 and defined[0] > defined[-1] else "does not fall with sigma" if len(defined) > 1 else "one sigma only")
        text = ", ".join(f"sigma {o['sigma']:g}: {fmt(o['onset'])}" for o in mine)
        parts.append(f"overlap >= {threshold:g}: onset {trend} ({text})" if defined else
                     f"overlap >= {threshold:g}: {NOT_REACHED} ({text})")
    figures = save_figure(ctx, "percolation: largest cluster of overlapping bumps against lambda (band: subsample seeds)", [
        (lambda th: lambda ax: (plot_seed_bands(
            ax, [series([e for e in entries if e["setting"]["data.sigma"] == s and e["setting"]["threshold"] == th],
                        lambda e: e["setting"]["data.keep_fraction"], f"sigma {s:g}") for s in ctx.params["sigmas"]],
            "data fraction lambda", f"largest cluster (overlap >= {th:g})"), ax.set_ylim(0, 1.02)))(th)
        for th in ctx.params["thresholds"]
    ])
    return {"statistics": stats, "verdict": "; ".join(parts), "figures": figures}
