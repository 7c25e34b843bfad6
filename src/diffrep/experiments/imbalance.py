"""The imbalance experiment: are x and y learned together (coupled) or apart (factorized)?"""

from __future__ import annotations

import numpy as np

from ..plots import plot_setting_curves
from ..sweep.tables import by_setting, final_value, time_to
from .common import (FACTORIZED_TRANSFER, NOT_REACHED, Context, first_rows, fmt, per_setting, save_figure,
                     setting_curves, short)

AXIS_ACCURACY_THRESHOLD = 0.5  # x-only / y-only accuracy that counts as "learned"
TOGETHER_FACTOR = 2.0  # x and y learned together when their times differ by less than this factor

def analyze_imbalance(rows: list[dict], ctx: Context) -> dict:
    """x-only and y-only accuracy, decoding and transfer R^2 over training for dx != dy.

    Per run: t_x, t_y, the first checkpoints with x_accuracy (y_accuracy) >= AXIS_ACCURACY_THRESHOLD;
    the timing is "together" when both are reached within a factor TOGETHER_FACTOR of each other,
    "apart" when they are not, or when one is reached at a step that is less than 1 / TOGETHER_FACTOR
    of the run's last step and the other never; otherwise undetermined. Per imbalanced setting the
    timing is the majority of its determined runs. The representation "transfers" when the mean over
    seeds of min(x_transfer_r2, y_transfer_r2) at the last checkpoint is >= FACTORIZED_TRANSFER.
    Verdict over the imbalanced settings whose timing is determined: 'coupled' when every one is
    together and no decoder transfers, 'factorized' when every one is apart and every decoder
    transfers, 'mixed' otherwise; NOT_REACHED when no imbalanced setting has a determined timing
    (nothing was learned to be coupled or not; the transfer R^2 is still reported).
    """
    threshold = ctx.params.get("axis_threshold", AXIS_ACCURACY_THRESHOLD)
    firsts = first_rows(rows)
    label = lambda r: f"dx {float(r['data.dx']):g}, dy {float(r['data.dy']):g}"  # noqa: E731
    t_x = time_to(rows, "score.train.x_accuracy", threshold)
    t_y = time_to(rows, "score.train.y_accuracy", threshold)
    last_step = {run: max(r["step"] for r in rows if r["run"] == run) for run in firsts}
    probe = f"probe.{ctx.layer}"
    final = {k: final_value(rows, f"{probe}.{k}") for k in ("x_transfer_r2", "y_transfer_r2", "decode_r2_x", "decode_r2_y")}

    def timing(run):
        a, b = t_x[run], t_y[run]
        if a is not None and b is not None:
            return "together" if max(a, b) < TOGETHER_FACTOR * max(min(a, b), 1) else "apart"
        one = a if a is not None else b
        if one is not None and one * TOGETHER_FACTOR < last_step[run]:
            return "apart"
        return None

    ratio = {r: (t_x[r] / t_y[r] if t_x[r] is not None and t_y[r] not in (None, 0) else None) for r in firsts}
    stats = {
        f"steps_to_x_accuracy_{threshold}": {"description": f"first checkpoint with x-only accuracy >= {threshold}",
                                             "per_setting": per_setting(rows, t_x, label)},
        f"steps_to_y_accuracy_{threshold}": {"description": f"first checkpoint with y-only accuracy >= {threshold}",
                                             "per_setting": per_setting(rows, t_y, label)},
        "x_over_y_time_ratio": {"description": "t_x / t_y (both reached)", "per_setting": per_setting(rows, ratio, label)},
    }
    for key, values in final.items():
        stats[f"final_{key}"] = {"description": f"{ctx.layer} {key} at the last checkpoint", "per_setting": per_setting(rows, values, label)}
    settings = []
    for group in by_setting(rows, {}):
        row = firsts[group["runs"][0]]
        if float(row["data.dx"]) == float(row["data.dy"]):
            continue
        votes = [timing(r) for r in group["runs"] if timing(r) is not None]
        together = votes.count("together")
        time_word = None if not votes else "together" if together * 2 > len(votes) else "apart" if together * 2 < len(votes) else None
        transfers = [min(final["x_transfer_r2"][r], final["y_transfer_r2"][r]) for r in group["runs"]
                     if final["x_transfer_r2"][r] is not None and final["y_transfer_r2"][r] is not None]
        transfer = None if not transfers else float(np.mean(transfers))
        settings.append({"label": label(row), "timing": time_word, "min_transfer_r2": transfer,
                         "transfers": None if transfer is None else transfer >= FACTORIZED_TRANSFER})
    stats["coupling"] = {"description": f"per imbalanced setting: timing of x vs y (within a factor {TOGETHER_FACTOR}: "
                                        f"together) and whether decoders transfer (min transfer R^2 >= {FACTORIZED_TRANSFER})",
                         "value": settings}
    verdict = coupling_verdict(settings)
    curves = lambda key: lambda ax: plot_setting_curves(ax, setting_curves(rows, key, label), short(key))  # noqa: E731
    figures = save_figure(ctx, "imbalance: x-only and y-only accuracy and transfer R^2 over training (band: seeds)", [
        curves("score.train.x_accuracy"), curves("score.train.y_accuracy"),
        curves(f"{probe}.x_transfer_r2"), curves(f"{probe}.y_transfer_r2"),
    ])
    return {"statistics": stats, "verdict": verdict, "figures": figures}


def coupling_verdict(settings: list[dict]) -> str:
    """'coupled', 'factorized', 'mixed' or NOT_REACHED from the per-setting timing and transfer (see
    `analyze_imbalance`), with the evidence."""
    if not settings:
        return f"{NOT_REACHED}: no imbalanced setting (dx != dy) in the sweep"
    evidence = "; ".join(f"{s['label']}: timing {s['timing'] or NOT_REACHED}, min transfer R^2 {fmt(s['min_transfer_r2'], 2)}"
                         for s in settings)
    determined = [s for s in settings if s["timing"] is not None]
    if not determined:
        return f"{NOT_REACHED}: x or y accuracy never reached its threshold ({evidence})"
    timings = {s["timing"] for s in determined}
    transfers = {s["transfers"] for s in determined} - {None}
    if timings == {"together"} and transfers <= {False}:
        word = "coupled"
    elif timings == {"apart"} and transfers <= {True}:
        word = "factorized"
    else:
        word = "mixed"
    return f"{word} ({evidence})"
