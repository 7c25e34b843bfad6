"""The families experiment: are the phases a property of the UNet and DDPM, or of diffusion training?

The papers study one family: a convolutional UNet trained to predict the noise. Here four families
train on the same data with the same conditioning and the same probe: the UNet and a small DiT
(model.arch), each with the noise (epsilon) objective and with flow matching (diffusion.objective),
six seeds each (the fewest its order and lag tests accept). For each family the phases
experiment's three predictions (order, agreement, lag; `phases.phase_predictions`) are computed on
its runs alone.

Beside the verdicts, per family, how soon it generates accurately: steps to accuracy 0.9 (the
curves' sampler), each run's median training-step time (`step_time` of metrics.jsonl: training
only, no evaluation), and their product, the training seconds to accuracy 0.9. The runs of all four
families share the machine in one sweep, so these seconds compare the families side by side.

Verdict line: per family its three verdicts. Summary: "the phases hold in every family" when every
family reproduces order and lag; "the phases are not general" when a family contradicts either;
otherwise not measurable at this scale, with the families that did not decide.
"""

from __future__ import annotations

import numpy as np

from ..sweep.tables import time_to
from .common import ACCURACY_KEY, ACCURACY_THRESHOLD, Context, first_rows, per_setting
from .phases import analyze_phases, phase_predictions, phase_statistics
from .stats import CONTRADICTED, NOT_MEASURABLE, REPRODUCED, verdict


def family(row: dict) -> str:
    return f"{row['model.arch']}, {row['diffusion.objective']}"


def step_seconds(rows: list[dict]) -> dict[str, float | None]:
    """Per run, the median of its logged training-step times (None where it logged none)."""
    times: dict[str, list[float]] = {}
    for row in rows:
        value = row.get("step_time")
        times.setdefault(row["run"], [])
        if value not in (None, ""):
            times[row["run"]].append(float(value))
    return {run: float(np.median(v)) if v else None for run, v in times.items()}


def time_to_accuracy(rows: list[dict]) -> dict:
    """Steps to accuracy ACCURACY_THRESHOLD, step time and training seconds to it, per family (module docstring)."""
    steps = time_to(rows, ACCURACY_KEY, ACCURACY_THRESHOLD)
    step_s = step_seconds(rows)
    seconds = {run: None if steps[run] is None or step_s[run] is None else steps[run] * step_s[run] for run in steps}
    return {
        f"steps_to_accuracy_{ACCURACY_THRESHOLD}": {
            "description": f"first checkpoint with accuracy >= {ACCURACY_THRESHOLD}",
            "per_setting": per_setting(rows, steps, family)},
        "step_seconds": {"description": "median training-step time of the run (s; training only, beside the other "
                                        "families' runs in one sweep)", "per_setting": per_setting(rows, step_s, family)},
        f"training_seconds_to_accuracy_{ACCURACY_THRESHOLD}": {
            "description": f"steps to accuracy >= {ACCURACY_THRESHOLD} x the run's median step time (s)",
            "per_setting": per_setting(rows, seconds, family)},
    }


def analyze_families(rows: list[dict], ctx: Context) -> dict:
    """The phases experiment's statistics per family (settings), its predictions per family, and each
    family's time to accurate generation."""
    result = analyze_phases(rows, ctx, label=family)  # statistics per family, the figure with every run
    result["statistics"].update(time_to_accuracy(rows))
    by_family: dict[str, list[dict]] = {}
    for run, row in first_rows(rows).items():
        by_family.setdefault(family(row), []).append(run)
    predictions, decided = [], {}
    for name, runs in sorted(by_family.items()):
        mine = [r for r in rows if r["run"] in set(runs)]
        stats, found = phase_statistics(mine, ctx, family)
        for p in phase_predictions(stats, found):
            predictions.append({**p, "name": f"{p['name']} ({name})"})
            decided[(name, p["name"])] = p["verdict"]
    names = sorted(by_family)
    key = [(n, p) for n in names for p in ("order", "lag")]
    if all(decided[k] == REPRODUCED for k in key):
        summary = verdict(REPRODUCED, "order and lag reproduced in every family: the phases hold beyond the UNet and DDPM")
    elif any(decided[k] == CONTRADICTED for k in key):
        summary = verdict(CONTRADICTED, "a family contradicts order or lag: " + ", ".join(
            f"{p} in {n}" for n, p in key if decided[(n, p)] == CONTRADICTED))
    else:
        summary = verdict(NOT_MEASURABLE, "not decided in " + ", ".join(
            f"{p} of {n}" for n, p in key if decided[(n, p)] != REPRODUCED))
    line = "; ".join(f"{p['name']}: {p['verdict']}" for p in predictions)
    return {**result, "predictions": [{"name": "general", "prediction": "the phases come in order and before accurate "
                                                                         "generation in every family", **summary},
                                      *predictions],
            "verdict": f"{summary['verdict']}: {summary['reason']} ({line})"}
