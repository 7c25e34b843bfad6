"""What every experiment's analysis shares: the context it runs in, statistics over seeds, words and figures.

Every analysis (one module per experiment in this package) takes the rows of
`sweep.tables.aggregate` (one per run and checkpoint) and a `Context` (where figures go, the
experiment's base config and parameters) and returns

    {"statistics": {name: statistic}, "verdict": str, "figures": [file names]}

and, where the claim is stated as predictions (phases, density, sigma), "predictions": [{"name",
"prediction", "verdict", "reason"}] with the verdicts of `stats`. A statistic is {"description", "per_setting":
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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config
from ..data import BumpDataset
from ..plots import save_panels
from ..sweep.tables import by_setting, config_from_row, curve, final_value, time_to

NOT_REACHED = "not reached"
ACCURACY_KEY = "score.train.accuracy"
ACCURACY_THRESHOLD = 0.9  # "time to 90% accuracy" (the sweep report's statistic)


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


def epochs(rows: list[dict], steps: dict[str, int | None]) -> dict[str, float | None]:
    """Per run, a number of training steps as passes over its training set (steps x batch size /
    training images), the unit the papers count in; None stays None."""
    out = {}
    for run, row in first_rows(rows).items():
        cfg = config_from_row(row)
        images = len(BumpDataset(cfg.data))
        out[run] = None if steps[run] is None else steps[run] * cfg.training.batch_size / images
    return out


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


def additive_share_gain(rows: list[dict], layer: str) -> tuple[dict, dict]:
    """Per run, `additive_share` of `layer` at the last checkpoint, and its gain over the same run at
    step 0 (the untrained network, its null): > 0 where training made the code more additive in x and
    y, the factorized code of the follow-up (probes.additive_share; tests/test_probes.py shows it tells
    a factorized code from coupled ones). None where either is missing."""
    key = f"probe.{layer}.additive_share"
    final = final_value(rows, key)
    start = {run: next((r.get(key) for r in rows if r["run"] == run and r["step"] == 0), None) for run in final}
    return final, {run: None if final[run] is None or start[run] is None else final[run] - start[run] for run in final}
