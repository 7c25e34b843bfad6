"""The percolation experiment (no training): the largest cluster of overlapping bumps against lambda."""

from __future__ import annotations

import numpy as np

from ..percolation import ONSET_SHARE, cluster_row, onset
from ..plots import plot_seed_bands
from .common import NOT_REACHED, Context, fmt, save_figure, seed_stats, series
from .stats import NOT_MEASURABLE, verdict


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
    """Largest cluster against lambda for each sigma and overlap threshold; its onset per subsample seed.

    No verdict on the papers' claim can come from geometry alone: that the onset lambda falls as sigma
    grows, or as the overlap threshold falls, follows from the definition of a link and cannot fail.
    What the experiment gives is the prediction that a training sweep over lambda tests: per sigma and
    threshold, the onset lambda (`percolation.onset`) of each subsample seed, its median and range.
    The claim itself (the representation's onset follows percolation) is therefore not measurable here.
    """
    entries, shares, onsets = [], [], []
    for sigma in ctx.params["sigmas"]:
        for threshold in ctx.params["thresholds"]:
            mine = [r for r in rows if r["data.sigma"] == sigma and r["threshold"] == threshold]
            lambdas = sorted({r["data.keep_fraction"] for r in mine})
            for lam in lambdas:
                at = [r for r in mine if r["data.keep_fraction"] == lam]
                for kept, key in ((entries, "largest_cluster_fraction"), (shares, "largest_cluster_share")):
                    kept.append({"label": f"sigma {sigma:g}, overlap >= {threshold:g}, lambda {lam:g}",
                                 "setting": {"data.sigma": sigma, "threshold": threshold, "data.keep_fraction": lam},
                                 "runs": [], **seed_stats([r[key] for r in at])})
            per_seed = []
            for seed in sorted({r["data.subsample_seed"] for r in mine}):
                points = sorted((r["data.keep_fraction"], r["largest_cluster_share"]) for r in mine
                                if r["data.subsample_seed"] == seed)
                per_seed.append(onset([lam for lam, _ in points], [share for _, share in points]))
            defined = [o for o in per_seed if o is not None]
            onsets.append({"sigma": sigma, "threshold": threshold, "per_seed": per_seed,
                           "median": float(np.median(defined)) if len(defined) == len(per_seed) and defined else None,
                           "range": [min(defined), max(defined)] if defined else None})
    stats = {"largest_cluster_fraction": {"description": "largest cluster / all lattice points, over subsample seeds",
                                          "per_setting": entries},
             "largest_cluster_share": {"description": "largest cluster / the kept points, over subsample seeds: the "
                                                      "onset is where it first reaches 1/2", "per_setting": shares},
             "onset_lambda": {"description": "per sigma and overlap threshold, the smallest lambda whose largest cluster "
                                             "holds half of the kept points, per subsample seed (None: never), "
                                             "its median (None unless every seed reached it) and range",
                              "value": onsets}}
    text = "; ".join(f"sigma {o['sigma']:g}, overlap >= {o['threshold']:g}: onset lambda "
                     + (f"{fmt(o['median'])} (seeds {fmt(o['range'][0])}-{fmt(o['range'][1])})" if o["median"] is not None
                        else NOT_REACHED if o["range"] is None else
                        f"reached by {sum(v is not None for v in o['per_seed'])} of {len(o['per_seed'])} seeds")
                     for o in onsets)
    decided = verdict(NOT_MEASURABLE, "geometry alone cannot test the claim (no training runs); the onsets are the "
                                      "prediction a training sweep over lambda tests: " + text)
    predictions = [{"name": "percolation onset", "prediction": "the representation's sudden onset over lambda comes where "
                                                                 "the overlap of neighbouring bumps percolates", **decided}]
    figures = save_figure(ctx, "percolation: the largest cluster's share of the kept bumps against lambda "
                               "(band: subsample seeds; dotted: the onset's 1/2)", [
        (lambda th: lambda ax: (plot_seed_bands(
            ax, [series([e for e in shares if e["setting"]["data.sigma"] == s and e["setting"]["threshold"] == th],
                        lambda e: e["setting"]["data.keep_fraction"], f"sigma {s:g}") for s in ctx.params["sigmas"]],
            "data fraction lambda", f"largest cluster / kept points (overlap >= {th:g})", log_x=True),
            ax.axhline(ONSET_SHARE, color="grey", linestyle=":", linewidth=1), ax.set_ylim(0, 1.02)))(th)
        for th in ctx.params["thresholds"]
    ])
    return {"statistics": stats, "predictions": predictions, "verdict": f"{decided['verdict']}: {decided['reason']}",
            "figures": figures}
