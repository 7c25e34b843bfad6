"""What every experiment's analysis shares: the context it runs in, statistics over seeds, words and figures.

Every analysis (one module per experiment in this package) takes the rows of
`sweep.tables.aggregate` (one per run and checkpoint) and a `Context` (where figures go, the
experiment's base config and parameters) and returns

    {"statistics": {name: statistic}, "verdict": str, "figures": [file names]}

and, where the claim is stated as predictions (phases), "predictions": [{"name", "prediction",
"verdict", "reason"}] with the verdicts of `stats`. A statistic is {"description", "per_setting":
[entry, ...]} or {"description", "value", ...}; an entry is one setting of the sweep over its seeds
(`seed_stats`):

    {"label", "setting", "runs", "values": [one per seed, None where not reached],
     "n", "n_reached", "mean", "min", "max"}   (mean, min, max over the reached values, else None)

Verdicts are computed from the statistics with the rules in each analysis's docstring, never written
by hand; where a statistic is undefined (no run reached it) the verdict says "not reached" rather
than inventing a number. Times to an event (a phase, an accuracy) that a run never reached are
censored: they rank after every reached time in rank correlations and comparisons, and are never
averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config
from ..plots import save_panels
from ..sweep.tables import by_setting, curve, final_value, time_to

NOT_REACHED = "not reached"
ACCURACY_KEY = "score.train.accuracy"
ACCURACY_THRESHOLD = 0.9  # "time to 90% accuracy" (the sweep report's statistic)
FACTORIZED_TRANSFER = 0.8  # x and y decoders transfer across the other coordinate: both R^2 at least this


@dataclass
class Context:
    out: Path  # where figures go (the sweep directory)
    base: Config  # the experiment's base config at its scale
    params: dict = field(default_factory=dict)  # the scale's experiment parameters (`experiments.Scale.params`)
    name: str = "experiment"
    layer: str = "layer4"  # the probed layer whose phases count


# ----------------------------------------------------------------------------
# Statistics over seeds.


def seed_stats(values: list) -> dict:
    """Values of one setting, one per seed (None: not reached), with mean, min and max of the reached ones."""
    reached = [float(v) for v in values if v is not None]
    return {"values": list(values), "n": len(values), "n_reached": len(reached),
            "mean": float(np.mean(reached)) if reached else None,
            "min": min(reached) if reached else None, "max": max(reached) if reached else None}


def first_rows(rows: list[dict]) -> dict[str, dict]:
    """One row per run (its config columns are the same in all of them), in row order."""
    firsts: dict[str, dict] = {}
    for row in rows:
        firsts.setdefault(row["run"], row)
    return firsts


def per_setting(rows: list[dict], per_run: dict, label) -> list[dict]:
    """`by_setting` of a per-run value, each group with `seed_stats` and label(first row of its first run)."""
    firsts = first_rows(rows)
    return [{"label": label(firsts[g["runs"][0]]), "setting": g["setting"], "runs": g["runs"], "seeds": g["seeds"],
             **seed_stats(g["values"])}
            for g in by_setting(rows, per_run)]


def censored_rank_correlation(xs: list[float], times: list) -> dict:
    """Spearman rho of a setting against times to an event, never-reached times (None) ranking last
    (tied). rho is None with fewer than 3 runs, no reached time, or a constant setting or rank."""
    from scipy.stats import rankdata, spearmanr

    n_reached = sum(t is not None for t in times)
    ranks = rankdata([math.inf if t is None else float(t) for t in times])
    if len(xs) < 3 or n_reached == 0 or np.ptp(xs) == 0 or np.ptp(ranks) == 0:
        return {"rho": None, "p_value": None, "n": len(xs), "n_reached": n_reached}
    res = spearmanr(xs, ranks)
    return {"rho": float(res.statistic), "p_value": float(res.pvalue), "n": len(xs), "n_reached": n_reached}


def common_time(times: list):
    """The step at which every run reached the event when it is the same for all (no rank to
    correlate: at this checkpoint resolution the settings do not differ), else None."""
    return times[0] if times and times[0] is not None and len(set(times)) == 1 else None


def earlier_or_later(times: list, reference: list) -> str:
    """'earlier', 'later' or 'no clear change': every seed before (after) every reference seed, with
    never-reached times after every reached one; NOT_REACHED when no run of either reached it."""
    if all(t is None for t in times + reference):
        return NOT_REACHED
    t = [math.inf if v is None else v for v in times]
    r = [math.inf if v is None else v for v in reference]
    if max(t) < min(r):
        return "earlier"
    if min(t) > max(r):
        return "later"
    return "no clear change"


def fmt(value, digits: int = 3) -> str:
    """A number for a verdict or a table; None is 'not reached'."""
    if value is None:
        return NOT_REACHED
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}g}"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def setting_curves(rows: list[dict], key: str, label) -> list[dict]:
    """Groups for `plots.plot_setting_curves`: per setting, the curve of `key` of each of its runs."""
    firsts = first_rows(rows)
    groups = by_setting(rows, {})
    return [{"label": label(firsts[g["runs"][0]]), "runs": [c for c in (curve(rows, run, key) for run in g["runs"]) if c]}
            for g in groups]


def series(entries: list[dict], x_of, label: str = "") -> dict:
    """A `plots.plot_seed_bands` series from per-setting entries, ordered by x."""
    pairs = sorted(((x_of(e), e["values"]) for e in entries), key=lambda p: p[0])
    return {"label": label, "x": [p[0] for p in pairs], "values": [p[1] for p in pairs]}


def save_figure(ctx: Context, title: str, drawers: list) -> list[str]:
    path = ctx.out / f"{ctx.name}.png"
    save_panels(path, title, drawers)
    return [path.name]


def timing_statistics(rows: list[dict], ctx: Context, label) -> tuple[dict, dict, dict]:
    """Steps to phase C (at ctx.layer) and to 90% accuracy, and the final accuracy, per setting over seeds;
    also {run: steps to phase C} and {run: steps to 90% accuracy} (`sweep.tables.time_to`)."""
    to_c = time_to(rows, f"phase.{ctx.layer}", "C")
    to_acc = time_to(rows, ACCURACY_KEY, ACCURACY_THRESHOLD)
    stats = {
        "steps_to_phase_C": {"description": f"first checkpoint labelled phase C ({ctx.layer})",
                             "per_setting": per_setting(rows, to_c, label)},
        f"steps_to_accuracy_{ACCURACY_THRESHOLD}": {"description": f"first checkpoint with accuracy >= {ACCURACY_THRESHOLD}",
                                                    "per_setting": per_setting(rows, to_acc, label)},
        "final_accuracy": {"description": "in-distribution accuracy at the last checkpoint",
                           "per_setting": per_setting(rows, final_value(rows, ACCURACY_KEY), label)},
    }
    return stats, to_c, to_acc
